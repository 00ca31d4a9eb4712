"""The `auth = { ... }` table of a mount: which hooks check a login, in which process.

Strategy: a frozen dataclass in the config layer, checked when the configuration is
read (hook names are module:function, the realm is printable), so a mistake is a
ConfigError naming the mount before any worker starts. The hooks themselves are
imported and called by the handler (fastgw.auth), never here.
"""
from dataclasses import dataclass
from typing import Optional

from fastgw.errors import ConfigError

AUTH_KEYS = ("realm", "check_password", "groups_for_user", "require_group", "group")


@dataclass(frozen=True)
class AuthConfig:
    """The `auth = { ... }` table of a mount."""

    check_password: str
    realm: str = "fastgw"
    groups_for_user: Optional[str] = None
    require_group: Optional[str] = None
    # The process group whose processes run the hooks (Django set up there); None: in the
    # front worker.
    group: Optional[str] = None

    @classmethod
    def from_table(cls, table, where):
        """A TOML inline table -> AuthConfig; errors name `where` and the key."""
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: auth must be a table, e.g. auth = {{ realm = \"Staff\", "
                              f"check_password = \"mysite.wsgi:check_password\" }}")
        for key, value in table.items():
            if key not in AUTH_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r} in auth; allowed keys: "
                                  f"{', '.join(AUTH_KEYS)}")
            if not isinstance(value, str):
                raise ConfigError(f"{where}: auth.{key} must be a string")
        if "check_password" not in table:
            raise ConfigError(f"{where}: auth needs check_password = \"module:function\", e.g. "
                              f"\"django.contrib.auth.handlers.modwsgi:check_password\"")
        return cls(**table).checked(where)

    def checked(self, where):
        for key in ("check_password", "groups_for_user"):
            spec = getattr(self, key)
            if spec is not None:
                split_hook(spec, f"{where}: auth.{key}")
        if not self.realm or any(c < " " or c in '"\\\x7f' for c in self.realm):
            raise ConfigError(f"{where}: auth.realm {self.realm!r} must be a non-empty name "
                              f"without quotes, backslashes or control characters")
        if self.require_group is not None and self.groups_for_user is None:
            raise ConfigError(f"{where}: auth.require_group needs groups_for_user = "
                              f"\"module:function\" to find the user's groups")
        if self.groups_for_user is not None and self.require_group is None:
            raise ConfigError(f"{where}: auth.groups_for_user is only used with "
                              f"require_group = \"GROUP\"; add it or remove groups_for_user")
        return self

    def describe(self):
        text = f"auth realm={self.realm!r} check_password={self.check_password}"
        if self.require_group is not None:
            text += f" require_group={self.require_group!r}"
        if self.group is not None:
            text += f" in group {self.group}"
        return text


def split_hook(spec, where):
    """'package.module:function' -> (module, attribute path)."""
    module, sep, name = spec.partition(":")
    parts = module.split(".") + name.split(".")
    if not sep or not all(p.isidentifier() for p in parts):
        raise ConfigError(f"{where} {spec!r}: expected module:function, e.g. "
                          f"django.contrib.auth.handlers.modwsgi:check_password")
    return module, name
