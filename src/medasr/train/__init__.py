"""Training: targets and batches (collator), the recipe, and the Trainer glue (run).

    from medasr.train import load_recipe, train
    result = train(load_recipe("recipes/demo.yaml", ["epochs=1"]))
"""

from medasr.train.recipe import Recipe, RecipeError, load_recipe


def train(recipe: Recipe):
    """Run the recipe (imports torch and transformers on first use)."""
    from medasr.train.run import train as _train

    return _train(recipe)


__all__ = ["Recipe", "RecipeError", "load_recipe", "train"]
