"""Local HTTP fakes of Stripe and Calendly, for `bookingflow dev` and the test-suite.

    sandbox = Sandbox(SandboxConfig(...))
    server, base = serve_in_thread(sandbox.app)
    # STRIPE_API_BASE = base + "/stripe"; CALENDLY_API_BASE = base + "/calendly"
"""

from .app import Sandbox, SandboxConfig, create_app, serve_in_thread
from .chaos import Chaos

__all__ = ["Chaos", "Sandbox", "SandboxConfig", "create_app", "serve_in_thread"]
