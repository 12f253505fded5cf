"""The kernel every app stands on: domain errors, the job base and runner, roles and permissions,
typed environment helpers, task decorators and the worker definition. Imports no app."""
