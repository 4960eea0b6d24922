"""Who may do what: every action of the API is authorised by oslo.policy.

The rules are defined here, in OpenStack's default personas (as Cinder's and
Designate's transfer APIs define theirs): a project reader lists and reads the
report, a project member requests and decides (the destination's member: the
service finds only orders addressed to the caller's project), and an
administrator of the cloud (the `admin` role, or a system-scoped Keystone token)
reads across projects. An operator overrides any rule in a policy file
(PM_ORDER_POLICY_FILE); `oslopolicy-sample-generator --namespace pm-order`
writes every rule with its default (examples/policy.yaml.sample). The file is
read again on the first check after it changes: no restart is needed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cachetools import LRUCache
from oslo_config import cfg
from oslo_policy import policy

from api.auth import Identity
from service.config import ConfigError

PROJECT_READER: Final = "project_reader"
PROJECT_MEMBER: Final = "project_member"
CLOUD_ADMIN: Final = "cloud_admin"
APPROVER: Final = "approver"

LIST_ORDERS: Final = "pm_order:order:list"
REQUEST_TRANSFER: Final = "pm_order:order:request"
DECIDE_ORDERS: Final = "pm_order:order:decide"
SHOW_REPORT: Final = "pm_order:report:show"
LIST_UNFINISHED: Final = "pm_order:admin:unfinished:list"
SHOW_SERVER: Final = "pm_order:admin:server:show"

# Decisions a process remembers (the least recently used go first).
DECISIONS_KEPT: Final = 4096

# Keystone's default role implications (admin implies member, member implies
# reader): Keystone puts the implied roles in its tokens; a tokens file lists
# only the roles it gives, so they are implied here too.
IMPLIED_ROLES: Final[Mapping[str, frozenset[str]]] = {
    "admin": frozenset({"member", "reader"}),
    "member": frozenset({"reader"}),
}

_PROJECT: Final = "project_id:%(project_id)s"


def base_rules(approver_roles: Iterable[str] = ()) -> list[policy.RuleDefault]:
    """The personas the action rules are written in. `approver_roles`
    (PM_ORDER_APPROVER_ROLES) makes the approver those roles' holders in the
    project instead of its members."""
    roles = sorted(approver_roles)
    approver = (
        "(" + " or ".join(f"role:{r}" for r in roles) + f") and {_PROJECT}"
        if roles
        else f"rule:{PROJECT_MEMBER}"
    )
    return [
        policy.RuleDefault(
            PROJECT_READER,
            f"role:reader and {_PROJECT}",
            description="A reader of the project in the URL.",
        ),
        policy.RuleDefault(
            PROJECT_MEMBER,
            f"role:member and {_PROJECT}",
            description="A member of the project in the URL.",
        ),
        policy.RuleDefault(
            CLOUD_ADMIN,
            "role:admin or system_scope:all",
            description="An administrator of the cloud: the admin role, or a "
            "system-scoped token.",
        ),
        policy.RuleDefault(
            APPROVER,
            approver,
            description="Who may accept or refuse orders addressed to the project "
            "in the URL: its members, or, when PM_ORDER_APPROVER_ROLES is set, the "
            "holders of one of those roles in it.",
        ),
    ]


ACTION_RULES: Final = [
    policy.DocumentedRuleDefault(
        name=LIST_ORDERS,
        check_str=f"rule:{PROJECT_READER}",
        description="List the project's orders (the five list types).",
        operations=[{"path": "/pm_order/{tenant_id}", "method": "GET"}],
        scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=REQUEST_TRANSFER,
        check_str=f"rule:{PROJECT_MEMBER}",
        description="Order the transfer of the project's servers to another project.",
        operations=[{"path": "/pm_order/{tenant_id}", "method": "POST"}],
        scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=DECIDE_ORDERS,
        check_str=f"rule:{APPROVER}",
        description="Accept or refuse orders addressed to the project.",
        operations=[{"path": "/pm_order/{tenant_id}", "method": "PUT"}],
        scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=SHOW_REPORT,
        check_str=f"rule:{PROJECT_READER}",
        description="Read the project's report.",
        operations=[{"path": "/pm_order_report/{tenant_id}", "method": "GET"}],
        scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=LIST_UNFINISHED,
        check_str=f"rule:{CLOUD_ADMIN}",
        description="List the unfinished orders of every project, oldest first.",
        operations=[{"path": "/pm_order_admin/unfinished_orders", "method": "GET"}],
        scope_types=["system", "project"],
    ),
    policy.DocumentedRuleDefault(
        name=SHOW_SERVER,
        check_str=f"rule:{CLOUD_ADMIN}",
        description="Show a server's owner and history, whichever project owns it.",
        operations=[{"path": "/pm_order_admin/servers/{snid}", "method": "GET"}],
        scope_types=["system", "project"],
    ),
]

# What each refusal says the caller tried.
DOING: Final = {
    LIST_ORDERS: "listing orders",
    REQUEST_TRANSFER: "requesting transfers",
    DECIDE_ORDERS: "deciding orders",
    SHOW_REPORT: "reading the report",
    LIST_UNFINISHED: "listing every project's unfinished orders",
    SHOW_SERVER: "reading a server's history",
}


def list_rules() -> list[policy.RuleDefault]:
    """Every rule with its default: the `oslo.policy.policies` entry point, read by
    oslopolicy-sample-generator (and the other oslopolicy tools)."""
    return [*base_rules(), *ACTION_RULES]


@dataclass(frozen=True)
class Refusal:
    """Why the policy refused: the rule, and a sentence for the caller."""

    rule: str
    message: str


class Policy:
    """The rules in force: the defaults, overridden by the policy file if any."""

    def __init__(
        self, policy_file: Path | None = None, approver_roles: Iterable[str] = ()
    ) -> None:
        # A configuration of its own: nothing global, no command line parsed.
        # (No directory is searched: without PM_ORDER_POLICY_FILE, the
        # defaults alone.)
        conf = cfg.ConfigOpts()
        conf([], project="pm-order", default_config_files=[], default_config_dirs=[])
        self.approver_roles = frozenset(approver_roles)
        self._file = policy_file.resolve() if policy_file else None
        # Decisions remembered by all they depend on (the rule, the URL's
        # project, the identity) while the file stays as it is: oslo.policy's
        # own decision costs more CPU than the rest of a request (it inspects
        # each check's signature and stats the file on every call).
        self._decisions: LRUCache[tuple[str, str | None, Identity], Refusal | None] = (
            LRUCache(DECISIONS_KEPT)
        )
        self._decisions_lock = threading.Lock()
        self._file_seen = self._file_state()
        self._enforcer = policy.Enforcer(
            conf, policy_file=str(policy_file.resolve()) if policy_file else None
        )
        self._enforcer.register_defaults(
            [*base_rules(self.approver_roles), *ACTION_RULES]
        )
        # Read now, so that a broken file stops the process at start.
        try:
            self._enforcer.load_rules()
        except ValueError as error:  # YAML's and oslo.policy's errors alike
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                f"PM_ORDER_POLICY_FILE={str(policy_file)!r} is not a policy file "
                f"oslo.policy reads ({first}); see examples/policy.yaml.sample"
            ) from None

    def refusal(
        self, rule: str, identity: Identity, project: str | None = None
    ) -> Refusal | None:
        """None when `identity` may do `rule` (on `project`'s URL, if any), else
        why not. A policy file changed since the last check is read first."""
        key = (rule, project, identity)
        state = self._file_state()
        with self._decisions_lock:
            if state != self._file_seen:
                self._decisions.clear()
                self._file_seen = state
            elif key in self._decisions:
                return self._decisions[key]
        decided = self._decided(rule, identity, project)
        with self._decisions_lock:
            self._decisions[key] = decided
        return decided

    def _file_state(self) -> tuple[int, int, int] | None:
        """What says the policy file changed (None: no file, or none there)."""
        if self._file is None:
            return None
        try:
            found = os.stat(self._file)
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino)

    def _decided(
        self, rule: str, identity: Identity, project: str | None
    ) -> Refusal | None:
        target = {"project_id": project} if project is not None else {}
        if self._enforcer.authorize(rule, target, credentials(identity)):
            return None
        message = f"the policy does not allow {DOING.get(rule, rule)} to this token"
        if rule == DECIDE_ORDERS and self.approver_roles:
            message += " (deciding orders needs one of the roles: " + (
                ", ".join(sorted(self.approver_roles)) + ")"
            )
        return Refusal(rule, f"{message} (rule {rule})")


def credentials(identity: Identity) -> dict[str, Any]:
    """What oslo.policy checks of a token, with Keystone's implied roles."""
    roles = set(identity.roles)
    for role in identity.roles:
        roles |= IMPLIED_ROLES.get(role, frozenset())
    return {
        "roles": sorted(roles),
        "project_id": identity.project or None,
        "user_name": identity.user_name,
        "system_scope": identity.system_scope,
    }
