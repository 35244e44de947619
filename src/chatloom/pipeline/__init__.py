"""``chatloom build``: a recipe of inputs, tasks, filters and transforms → training data + a report.

    from chatloom.pipeline import Recipe, run_recipe
"""
