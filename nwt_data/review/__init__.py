"""Step 5 of Appendix D: people accept or reject clips. `session.py` holds the logic, `app.py` the UI."""
