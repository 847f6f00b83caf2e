"""Clients of the two providers: the only modules that talk to Stripe and Calendly."""
