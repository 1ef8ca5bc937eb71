//! Every shader parses and validates with naga (no GPU needed), every shader
//! file has a registry entry and back, every shared snippet is used and
//! composed as named, and what naga reflects (bindings, workgroup size,
//! uniform size) matches the Rust descriptor.

use gpuimg::kernels::{self, BindingKind};
use gpuimg::wgpu::naga;

fn parse_and_validate(name: &str, source: &str) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string_with_path(source, name))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(source, name))?;
    Ok((module, info))
}

#[test]
fn every_shader_validates() {
    let errors: Vec<String> = kernels::ALL
        .iter()
        .filter_map(|e| parse_and_validate(&format!("shaders/{}.wgsl", e.desc.name), e.desc.source).err())
        .collect();
    assert!(errors.is_empty(), "{} shader(s) failed naga validation:\n{}", errors.len(), errors.join("\n"));
}

#[test]
fn registry_and_shader_files_match() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut names: Vec<String> = kernels::ALL.iter().map(|e| e.desc.name.to_string()).collect();
    names.sort();
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(names, dedup, "duplicate kernel names in the registry");
    assert_eq!(files, names, "shaders/*.wgsl and kernels::ALL differ");
    let mut used = std::collections::BTreeSet::new();
    for d in kernels::ALL.iter().map(|e| e.desc) {
        let mut want = String::new();
        for lib in d.snippets {
            want += &std::fs::read_to_string(dir.join("lib").join(format!("{lib}.wgsl"))).unwrap();
            used.insert(lib.to_string());
        }
        want += &std::fs::read_to_string(dir.join(format!("{}.wgsl", d.name))).unwrap();
        assert_eq!(want, d.source, "{}: descriptor source is not its snippets + shaders/{}.wgsl", d.name, d.name);
        assert!(std::ptr::eq(kernels::find(d.name).unwrap().desc, d));
    }
    let libs: std::collections::BTreeSet<String> = std::fs::read_dir(dir.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(libs, used, "shaders/lib/*.wgsl and the snippets the descriptors name differ");
}

#[test]
fn reflection_matches_descriptors() {
    for d in kernels::ALL.iter().map(|e| e.desc) {
        let (module, _) = parse_and_validate(d.name, d.source).unwrap();
        assert_eq!(module.entry_points.len(), 1, "{}: one entry point expected", d.name);
        let ep = &module.entry_points[0];
        assert_eq!(ep.name, "main", "{}: entry point must be main", d.name);
        assert_eq!(ep.stage, naga::ShaderStage::Compute, "{}", d.name);
        assert_eq!(ep.workgroup_size, d.workgroup_size, "{}: workgroup size", d.name);

        let mut seen = vec![false; d.bindings.len()];
        for (_, var) in module.global_variables.iter() {
            let Some(rb) = &var.binding else { continue };
            assert_eq!(rb.group, 0, "{}: only group 0 is used", d.name);
            let i = rb.binding as usize;
            assert!(i < d.bindings.len(), "{}: binding {i} is not in the descriptor", d.name);
            assert!(!seen[i], "{}: binding {i} declared twice", d.name);
            seen[i] = true;
            let kind = match var.space {
                naga::AddressSpace::Uniform => BindingKind::Uniform,
                naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                    BindingKind::ReadWrite
                }
                naga::AddressSpace::Storage { .. } => BindingKind::Read,
                other => panic!("{}: binding {i} in unexpected space {other:?}", d.name),
            };
            assert_eq!(kind, d.bindings[i], "{}: binding {i} kind", d.name);
            if kind == BindingKind::Uniform {
                assert_eq!(i, 0, "{}: the params uniform must be binding 0", d.name);
                let size = module.types[var.ty].inner.size(module.to_ctx());
                assert_eq!(size as u64, d.params_size, "{}: uniform struct size vs Rust params", d.name);
            }
        }
        assert!(seen.iter().all(|&s| s), "{}: descriptor declares bindings the shader lacks: {seen:?}", d.name);
    }
}

#[test]
fn broken_shader_is_reported() {
    // The check itself must be able to fail.
    let bad = "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }";
    let err = parse_and_validate("bad.wgsl", bad).unwrap_err();
    assert!(err.contains("bad.wgsl"), "error names the file: {err}");
}
