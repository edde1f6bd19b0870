"""Redis and PostgreSQL access of rollcall: presence, roster and liveness keys (with their Lua
scripts), lessons and enrolment, and the one list of key names (`keys.py`)."""
