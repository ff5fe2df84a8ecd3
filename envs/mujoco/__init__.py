"""The real side: MuJoCo task presets rendered to pixels, scripted policies, and recording their
rollouts into HDF5 files. (The learned side, DiffusionWorld-v0, is `envs.diffusion_world`.)"""
