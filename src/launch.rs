//! Where this process stands in a job that an MPI launcher (`mpirun`,
//! `mpiexec`, `srun`) started, read from the launcher's environment: no MPI
//! call, so the lowest layers (the GPU's adapter choice) can use it, and a
//! build without MPI can recognise, and refuse, such a launch
//! (`cluster::refuse_without_mpi`).

/// Where this process stands in a job an MPI launcher started, read from
/// the launcher's environment (no MPI call needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank in the job.
    pub rank: usize,
    /// Processes in the job.
    pub size: usize,
    /// This process's rank among those on its node, where the launcher says.
    pub local_rank: Option<usize>,
}

impl Launch {
    /// The launch this process is part of, if an MPI launcher started it:
    /// Open MPI's `OMPI_COMM_WORLD_*`, or MPICH/Intel MPI's `PMI_RANK` and
    /// `PMI_SIZE` (with `MPI_LOCALRANKID`).
    pub fn from_env() -> Option<Launch> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (for tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<Launch> {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok());
        for (rank, size, local) in [
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
            ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
        ] {
            if let (Some(r), Some(s)) = (num(rank), num(size)) {
                if s > 0 && r < s {
                    return Some(Launch { rank: r, size: s, local_rank: num(local) });
                }
            }
        }
        None
    }

    /// The local rank of this process when it is one of several in an MPI
    /// job (used to spread ranks over a node's GPUs).
    pub fn local_rank_in_job() -> Option<usize> {
        Self::from_env().filter(|l| l.size > 1).map(|l| l.local_rank.unwrap_or(l.rank))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_from_open_mpi_and_pmi_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        const OMPI: [(&str, &str); 3] =
            [("OMPI_COMM_WORLD_RANK", "2"), ("OMPI_COMM_WORLD_SIZE", "3"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")];
        assert_eq!(Launch::from_vars(vars(&OMPI)), Some(Launch { rank: 2, size: 3, local_rank: Some(1) }));
        const PMI: [(&str, &str); 2] = [("PMI_RANK", "0"), ("PMI_SIZE", "4")];
        assert_eq!(Launch::from_vars(vars(&PMI)), Some(Launch { rank: 0, size: 4, local_rank: None }));
        assert_eq!(Launch::from_vars(vars(&[])), None);
        // A rank outside the size, or garbage, is not a launch.
        assert_eq!(Launch::from_vars(vars(&[("PMI_RANK", "4"), ("PMI_SIZE", "4")])), None);
        assert_eq!(Launch::from_vars(vars(&[("PMI_RANK", "x"), ("PMI_SIZE", "4")])), None);
    }
}
