//! Training on the CPU: the backward passes of the kernels (our own code,
//! checked against finite differences in tests), Adam, and per-model loops.

pub mod codec;
pub mod enhance;
pub mod grad;
pub mod sr;

/// Adam (Kingma & Ba) over one flat parameter vector.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Step size.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    /// Adam for `n` parameters.
    pub fn new(n: usize, lr: f32, beta1: f32, beta2: f32) -> Adam {
        Adam { lr, beta1, beta2, eps: 1e-8, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One update of `params` with gradient `g`.
    pub fn step(&mut self, params: &mut [f32], g: &[f32]) {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for i in 0..params.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = self.m[i] / c1;
            let vh = self.v[i] / c2;
            params[i] -= self.lr * mh / (vh.sqrt() + self.eps);
        }
    }
}

pub use crate::rng::SplitMix;
