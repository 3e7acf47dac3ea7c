"""Kubernetes discovery: watch the gateway pods so that a terminating or unready pod is
drained before its heartbeats stop.

The ``kubernetes`` client is synchronous, so list and watch run in a thread and hand each
new view of the pods to the event loop. The watch restarts from a fresh list whenever it
ends (timeout, expired resource version, API server restart).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from frys.router.membership import PodState

log = logging.getLogger("frys.router.kubernetes")

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isdir(SERVICE_ACCOUNT)


def pod_state(pod: Any) -> PodState:
    conditions = (pod.status.conditions or []) if pod.status is not None else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return PodState(ready=ready, terminating=pod.metadata.deletion_timestamp is not None)


class PodWatcher:
    def __init__(
        self,
        namespace: str,
        selector: str,
        on_pods: Callable[[dict[str, PodState]], None],
        api_client: Any = None,
        watch_timeout_s: int = 60,
    ):
        self.namespace = namespace
        self.selector = selector
        self.on_pods = on_pods
        self.api_client = api_client
        self.watch_timeout_s = watch_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.errors = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="frys-k8s-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _publish(self, pods: dict[str, PodState]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.on_pods, dict(pods))

    def _api(self) -> Any:
        from kubernetes import client, config

        if self.api_client is not None:
            return client.CoreV1Api(self.api_client)
        if in_cluster():
            config.load_incluster_config()
        else:
            config.load_kube_config()
        return client.CoreV1Api()

    def _namespace(self) -> str:
        if self.namespace:
            return self.namespace
        try:
            with open(f"{SERVICE_ACCOUNT}/namespace") as fh:
                return fh.read().strip()
        except OSError:
            return "default"

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                api = self._api()
                namespace = self._namespace()
                listed = api.list_namespaced_pod(namespace, label_selector=self.selector)
                pods = {p.metadata.name: pod_state(p) for p in listed.items}
                self._publish(pods)
                stream = watch.Watch().stream(
                    api.list_namespaced_pod,
                    namespace,
                    label_selector=self.selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=self.watch_timeout_s,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    pod = event["object"]
                    name = pod.metadata.name
                    if event["type"] == "DELETED":
                        pods.pop(name, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        pods[name] = pod_state(pod)
                    self._publish(pods)
            except Exception as exc:
                self.errors += 1
                log.warning("pod watch failed (%s); listing again", exc)
                self._stop.wait(1.0)
