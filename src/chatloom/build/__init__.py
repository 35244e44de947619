"""``chatloom build``: a recipe of inputs, tasks, filters and transforms → training data + a report.

    from chatloom.build import Recipe, run_recipe
"""
