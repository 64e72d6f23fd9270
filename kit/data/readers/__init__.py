"""One reader per Kaggle layout (kit/data/layouts.py lists them). Each module's
`detect(contents)` finds its layout in a downloaded folder, as the recipe fields `kit new`
writes; its `read(folder, recipe, sample)` reads the folder as a recipe says, for `kit run`;
both parse labels and files through the same functions."""
