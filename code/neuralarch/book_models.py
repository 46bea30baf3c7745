"""The trained models that the book's pages share, listed so a build can train them first.

``make book`` trains every model here in its own step before any page executes (see
``tools/execute_book.py``), so that a page's execution time is its own and no two pages wait on the
same training: first the models of ``WHOLE_MACHINE``, one at a time on every core, then the
others two at a time on a 2-core machine, one thread each. Each entry is the exact call a page
makes; :func:`~neuralarch.train.artefacts.cached_model` keys the file on the recipe and the code, so
the pages then load what this step wrote. A page that asks for a model missing here still works (it
trains the model itself, under a lock); the build report names such models.
"""

from __future__ import annotations

from collections.abc import Callable

from neuralarch.generative.control_adapter import mnist_control_adapter
from neuralarch.generative.gan import mnist_gan, ring_sweep
from neuralarch.generative.latent_diffusion import latent_ddpm, pixel_diffusion_samples
from neuralarch.generative.mnist_ddpm import mnist_ddpm
from neuralarch.generative.vae import mnist_vae, mnist_vae_2d
from neuralarch.lm.classifier import sentiment_classifiers
from neuralarch.lm.micro_gemini import micro_gemini, nanogpt_baseline
from neuralarch.progress import hide_progress_bars
from neuralarch.projects.synthetic_markets.generator import market_ddpm
from neuralarch.projects.translator.models import gru_translator, transformer_translator
from neuralarch.text.word2vec import shakespeare_word2vec
from neuralarch.train.artefacts import TrainedModel
from neuralarch.vision.model_zoo import TRANSFER_SOURCE, mnist_cnn, mnist_vit
from neuralarch.vision.texture_net import texture_net

# Trained one at a time before the others, on every core (their recipes' ``threads``): lesson
# 6.6 races the two language models in a fixed budget of the 2-core machine, and two other
# shared models (7.5's adapter, the Module 7 table's samples) wait for the pixel DDPM.
WHOLE_MACHINE = ("micro-gemini", "nanogpt-baseline", "mnist-ddpm")

# Listed longest first (a model before those that load it), so that two workers finish
# together.
SHARED_MODELS: dict[str, Callable[[], TrainedModel]] = {
    "micro-gemini": micro_gemini,  # 6.6, week 08, the MoE lesson, `neuralarch.lm.generate`
    "nanogpt-baseline": nanogpt_baseline,  # lesson 6.6's baseline, trained side by side
    "mnist-ddpm": mnist_ddpm,  # lessons 7.1, 7.4, 7.5, week 11
    "gan-ring-sweep": ring_sweep,  # lesson 7.3's mode-collapse experiment
    "mnist-gan": mnist_gan,  # lesson 7.3, the Module 7 table
    "market-ddpm": market_ddpm,  # lesson 7.6, the synthetic market-data generator
    "mnist-cnn": mnist_cnn,  # lessons 4.1, 4.2, 4.4, 4.5, interpretability, weeks 03-05, Module 7
    "mnist-vae": mnist_vae,  # lessons 7.2, 7.3, the Module 7 table; latent diffusion's autoencoder
    "mnist-control-adapter": mnist_control_adapter,  # lesson 7.5 (loads mnist-ddpm)
    "w08-sentiment-classifiers": sentiment_classifiers,  # week 08 (fine-tunes micro-gemini)
    "mnist-ddpm-samples": pixel_diffusion_samples,  # the Module 7 table (loads mnist-ddpm)
    "translator-gru": gru_translator,  # lesson 5.6
    "translator-transformer": transformer_translator,  # lesson 5.6
    "mnist-vit": mnist_vit,  # lessons 4.4 and 5.3
    "mnist-vae-2d": mnist_vae_2d,  # lesson 7.2's latent map
    "mnist-latent-ddpm": latent_ddpm,  # lesson 7.2, the Module 7 table (loads mnist-vae)
    "mnist-cnn-digits-0-4": lambda: mnist_cnn(TRANSFER_SOURCE),  # lesson 4.3's source model
    "texture-net": texture_net,  # the style-transfer lesson, week 05
    "shakespeare-word2vec": shakespeare_word2vec,  # the NLP lessons, week 06
}


def prepare(name: str) -> dict[str, object]:
    """Train (or load) the shared model ``name``; return its training time and cache file."""
    if name not in SHARED_MODELS:
        raise ValueError(f"no shared model {name!r}; the book's are {sorted(SHARED_MODELS)}")
    hide_progress_bars()  # nobody watches this step's bars; they would fill the build log
    trained = SHARED_MODELS[name]()
    return {"name": name, "trained_now": trained.trained_now, "seconds": round(trained.seconds, 1),
            "file": trained.path.name}
