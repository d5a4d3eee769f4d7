"""Gunicorn worker classes that run in Python under ferrocorn's master."""

from gunicorn.workers.sync import SyncWorker


class Tagged(SyncWorker):
    """A SyncWorker subclass that overrides a method, as deployments do to
    add logging or metrics around each request."""

    def handle_request(self, listener, req, client, addr):
        self.log.info("tagged request %s", req.path)
        return super().handle_request(listener, req, client, addr)
