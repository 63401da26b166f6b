"""DiffUIR (Zheng et al., CVPR 2024): selective hourglass mapping for universal image restoration."""
