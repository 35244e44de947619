"""``chatloom build``: a recipe of inputs, tasks, filters and transforms → training data + a report.

    from chatloom.pipeline.recipe import load_recipe
    from chatloom.pipeline.runner import run_recipe

    result = run_recipe(load_recipe("recipe.yaml"), "out/", workers=4)

- ``recipe_file.py``: reading a recipe's YAML within limits; ``recipe.py``: the recipe's schema (pydantic),
  its checks, ``RecipeError`` and ``resolve_steps``; ``inputs.py``: checking and reading its inputs
- ``base.py``: ``Step`` (generic over its ``Params``), ``Filter``, ``Transform``, ``DatasetFilter``
- ``registry.py``: the steps by name (built-ins and plugins) and ``build_step``
- ``filters/``, ``transforms/``: the built-in steps
- ``runner.py``: the run (segments, barriers, rejects, the report's data); ``report.py``: report.html
- ``executors/``: what runs the per-conversation steps (``local.py``: this process or a pool;
  ``ray.py``: Ray Data)
"""
