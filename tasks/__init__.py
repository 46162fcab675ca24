"""The lifecycle's logic as Prefect tasks (pure, typed functions underneath)."""
