"""The episode loop's iterator shared by the evaluation helpers."""

from __future__ import annotations


def episode_range(episodes: int, policy, progress: bool):
    """``range(episodes)``, with a progress bar named after ``policy`` when ``progress``."""
    iterator = range(episodes)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"evaluate {getattr(policy, 'name', policy)}", leave=False)
    return iterator
