"""The backend object for a model, picked by its `backend` key in models.toml (llama.cpp,
transformers, openai, custom). Each backend is imported only when a model uses it.
"""
from __future__ import annotations


def load_backend(spec):
    """The backend object for a model; imports only what that backend needs."""
    if spec.backend == "llama.cpp":
        from backends.llama_backend import LlamaBackend
        return LlamaBackend(spec)
    if spec.backend == "transformers":
        from backends.hf_backend import TransformersBackend
        return TransformersBackend(spec)
    if spec.backend == "openai":
        from backends.openai_backend import OpenAIBackend
        return OpenAIBackend(spec)
    if spec.backend == "custom":
        from backends.custom_backend import CustomBackend
        return CustomBackend(spec)
    raise ValueError(f"model '{spec.name}': unknown backend '{spec.backend}'")
