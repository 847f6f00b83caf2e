"""Errors as the contract shapes them: {"error": {"code", "message"}}, never a stack trace."""

from __future__ import annotations

import logging

import peewee
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_response(status: int, code: str, message: str, **extra):
    response = jsonify({"error": {"code": code, "message": message, **extra}})
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 413:
            return error_response(413, "payload_too_large", "the body is larger than 256 KiB")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # required by HTTP on a 405
        return response

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    def database_down(exc: Exception):
        # The provider (or the client) retries a 503; nothing was accepted.
        log.error("database unavailable: %s", exc.__class__.__name__)
        return error_response(503, "unavailable", "the database is unreachable; try again")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "something went wrong on our side")
