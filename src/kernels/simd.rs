//! AVX2+FMA helpers shared by the hand-written CPU micro-kernels.

use std::arch::x86_64::*;

/// PReLU on eight lanes: `v` where `v >= 0`, else `a * v` (the scalar
/// `if v >= 0.0 { v } else { a * v }`, lane by lane, NaN included).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn prelu8(v: __m256, a: f32) -> __m256 {
    let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(v, _mm256_setzero_ps());
    _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(a), v), v, ge)
}

/// e^x on eight lanes: Cephes' `expf` (range reduction by ln 2 in two
/// parts, a degree-5 polynomial, the exponent put in by integer add), within
/// 2 ulp of the correctly rounded value for x in [-87, 88] (the argument
/// is clamped to +-88.38, so larger ones saturate instead of overflowing).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.376_26)), _mm256_set1_ps(88.376_26));
    let fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), _mm256_set1_ps(0.5)));
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), x);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x), _mm256_set1_ps(1.0));
    let n = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)));
    _mm256_mul_ps(y, _mm256_castsi256_ps(n))
}

/// The logistic sigmoid 1 / (1 + e^-x) on eight lanes ([`exp8`]).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn sigmoid8(x: __m256) -> __m256 {
    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(_mm256_set1_ps(1.0), _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// tanh on eight lanes: 1 - 2 / (e^(2|x|) + 1) ([`exp8`]) with x's sign,
/// within 1.5e-7 of libm's (absolute; the values are in [-1, 1]). NaN
/// lanes give NaN.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn tanh8(x: __m256) -> __m256 {
    let sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0));
    let a = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
    let e = exp8(_mm256_add_ps(a, a));
    let t =
        _mm256_sub_ps(_mm256_set1_ps(1.0), _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, _mm256_set1_ps(1.0))));
    let t = _mm256_or_ps(t, sign);
    // exp8 clamps its argument, which would turn NaN into +-1.
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    _mm256_blendv_ps(t, x, nan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp8_is_within_two_ulp_of_libm() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("exp8: not run (this CPU has no AVX2+FMA)");
            return;
        }
        let mut worst = (0, 0.0f32);
        let mut xs: Vec<f32> = (0..200_001).map(|i| -87.0 + 175.0 * i as f32 / 200_000.0).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0]);
        for c in xs.chunks(8) {
            let mut lanes = [0.0f32; 8];
            lanes[..c.len()].copy_from_slice(c);
            let mut got = [0.0f32; 8];
            // SAFETY: AVX2+FMA checked above.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(lanes.as_ptr()))) };
            for (x, g) in lanes.iter().zip(got).take(c.len()) {
                let u = ulps(g, x.exp());
                if u > worst.0 {
                    worst = (u, *x);
                }
            }
        }
        assert!(worst.0 <= 2, "exp8 is {} ulp off at {}", worst.0, worst.1);
        // Saturation instead of overflow to infinity or NaN.
        let mut got = [0.0f32; 8];
        let big = [200.0, -200.0, 89.0, -89.0, f32::MAX, f32::MIN, 88.0, -87.0];
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(big.as_ptr()))) };
        assert!(got.iter().all(|v| v.is_finite() && *v >= 0.0), "{got:?}");
    }

    #[test]
    fn tanh8_is_within_1_5e_7_of_libm() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("tanh8: not run (this CPU has no AVX2+FMA)");
            return;
        }
        let mut xs: Vec<f32> = (0..200_001).map(|i| -12.0 + 24.0 * i as f32 / 200_000.0).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e-4, -1e-4, 50.0, -50.0, 1e30, -1e30, f32::MAX, f32::MIN]);
        xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, 0.0, 0.0]);
        let mut worst = (0.0f32, 0.0f32);
        for c in xs.chunks(8) {
            let mut lanes = [0.0f32; 8];
            lanes[..c.len()].copy_from_slice(c);
            let mut got = [0.0f32; 8];
            // SAFETY: AVX2+FMA checked above.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), tanh8(_mm256_loadu_ps(lanes.as_ptr()))) };
            for (x, g) in lanes.iter().zip(got).take(c.len()) {
                if x.is_nan() {
                    assert!(g.is_nan(), "tanh8(NaN) = {g}");
                    continue;
                }
                let d = (g - x.tanh()).abs();
                if d > worst.0 {
                    worst = (d, *x);
                }
                assert!(g.is_sign_negative() == x.is_sign_negative() || g == 0.0, "tanh8({x}) = {g}");
            }
        }
        assert!(worst.0 <= 1.5e-7, "tanh8 is {} off at {}", worst.0, worst.1);
    }
}
