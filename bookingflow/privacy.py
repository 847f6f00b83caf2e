"""What may be shown of a client's personal data."""


def mask_email(email: str | None) -> str | None:
    """j***@example.com: enough for the client to recognise, too little to harvest."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"
