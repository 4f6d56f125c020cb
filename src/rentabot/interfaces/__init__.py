"""What the HTTP interfaces (the API and the page) share: the runtime of an app, who is
calling and what they may do, the checks every request passes, and JSON answers."""
