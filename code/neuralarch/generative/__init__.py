"""Generative models of Module 7: diffusion, variational autoencoders, GANs and latent diffusion.

Introduced in lesson 7.1 (``m07-l01``). Diffusion: :mod:`noise_schedules`, :mod:`ddpm`,
:mod:`toy`, :mod:`unet`, :mod:`mnist_ddpm` (the cached MNIST model), :mod:`ddim`,
:mod:`signals`, :mod:`image_to_image` and :mod:`control_adapter`. Variational autoencoders,
GANs and latent diffusion: :mod:`vae`, :mod:`gan`, :mod:`latent_diffusion`. Every generator is
judged by the one yardstick of :mod:`yardstick` (a Fréchet distance on the book's MNIST CNN
features, not an Inception FID).
"""
