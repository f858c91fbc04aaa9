"""Active learning: the strategies the app picks the next film with, and the simulation that measures them."""
