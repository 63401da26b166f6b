"""Diff-Restorer (Zhang et al., 2024): visual-prompt guided Stable Diffusion for universal image restoration.

Stage 1 (the conditioned diffusion model, sampled with the SD VAE decoder: "Ours_S"):
``clip_encoder`` (E_clip), ``prompt_processor`` (B_s, B_d, C), ``degradation_modulation`` (DMB, Eq. 3),
``control_encoder`` / ``control_decoder`` / ``control_module`` (Image-guided Control Module), ``stage1``
(LightningModule, Eq. 6-7), ``sd_loading`` (local SD-1.5 and tiny random builders), and the paper's analyses
``clip_probe`` (Fig. 3, Eq. 1) and ``tsne`` (Fig. 10). Stage 2 (§III-D, Eq. 5 and 8): ``drb`` (Degradation-aware
Refinement Block), ``decoder`` (Degradation-aware Decoder; Consistency Decoder adapter), ``discriminator``
(PatchGAN), ``perceptual_loss`` (VGG-19), ``stage2`` (LightningModule), and ``pipeline`` (the whole restoration).
"""
