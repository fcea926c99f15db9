"""One module per login state: `show(ctx)` renders it, `submit(ctx)` handles its form."""
