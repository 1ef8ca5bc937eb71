//! What the GPU context needs to know of a kernel: its descriptor. The
//! kernels themselves (one per shader) live in the `kernels` module, above this one.

/// What a binding slot holds. Slot 0 is always the params uniform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// `var<uniform>`: the params struct.
    Uniform,
    /// `var<storage, read>`: an input.
    Read,
    /// `var<storage, read_write>`: an output.
    ReadWrite,
}

/// Static description of a kernel; `tests/shaders.rs` checks it against the
/// shader as naga reflects it.
#[derive(Debug)]
pub struct KernelDesc {
    /// Kernel name: the shader's file stem.
    pub name: &'static str,
    /// WGSL source (entry point `main`, group 0): the shared snippets it
    /// names, then `shaders/<name>.wgsl`.
    pub source: &'static str,
    /// Shared snippets composed before the shader (`shaders/lib/<snippet>.wgsl`).
    pub snippets: &'static [&'static str],
    /// Bindings 0.. in order.
    pub bindings: &'static [BindingKind],
    /// Workgroup size declared by the shader.
    pub workgroup_size: [u32; 3],
    /// Size of the params uniform in bytes.
    pub params_size: u64,
}

impl KernelDesc {
    /// Debug label: `gpuimg.<name>`.
    pub fn label(&self) -> String {
        format!("gpuimg.{}", self.name)
    }
}
