"""The list of shared models that a build trains before executing the pages."""

from __future__ import annotations

import pytest

from neuralarch import book_models
from neuralarch.generative.mnist_ddpm import MnistDDPMConfig
from neuralarch.lm.micro_gemini import MicroGeminiRecipe, NanoGPTRecipe


def test_whole_machine_models_are_shared_models_listed_first():
    names = list(book_models.SHARED_MODELS)
    assert set(book_models.WHOLE_MACHINE) <= set(names)
    assert names[:len(book_models.WHOLE_MACHINE)] == list(book_models.WHOLE_MACHINE)


def test_the_raced_language_models_train_on_the_same_two_threads():
    assert MicroGeminiRecipe().threads == NanoGPTRecipe().threads == 2


def test_every_multi_threaded_recipe_trains_alone():
    # a recipe with threads > 1 trained beside another model would oversubscribe the cores
    recipes = {"micro-gemini": MicroGeminiRecipe(), "nanogpt-baseline": NanoGPTRecipe(),
               "mnist-ddpm": MnistDDPMConfig()}
    assert set(book_models.WHOLE_MACHINE) == {n for n, r in recipes.items() if r.threads > 1}


def test_prepare_names_the_known_models_when_asked_for_another():
    with pytest.raises(ValueError, match=r"no shared model 'nope'.*micro-gemini"):
        book_models.prepare("nope")
