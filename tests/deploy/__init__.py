"""Checks of deploy/, docker-compose.yml and the Dockerfile, and the health model they rely on."""
