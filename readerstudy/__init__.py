"""Reader studies: design, case builders, cases, assignments, coordinator and reader pages, API."""
