"""The science tier: kernels that know no scenario file. The wireless uplink (wireless/), the error
on received task vectors (perturb, phy), the merges (fusion, spectral, methods as records), the
defenses (defense, denoise; defenses as records), the jammers that know a defense (jamming), evaluation
and the flat-vector helpers (taskvec); the fitted constants (calibration). Imports only the ground
floor (errors, units, validation, cache) and the zoo."""
