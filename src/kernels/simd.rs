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
