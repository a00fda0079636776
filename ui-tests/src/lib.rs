//! trybuild cases for the cluster2 macros live under `tests/`.
