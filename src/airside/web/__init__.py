"""web: the API, scheduler and database (ATC + TSA in Concourse terms)."""
