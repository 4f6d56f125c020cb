"""The web page for people: server-rendered HTML, no assets from the internet."""
