"""The deployment examples in examples/ are valid for the tools that read them, and the
fastgw command lines in them parse and pass `fastgw check`.

- systemd: `systemd-analyze verify` on the unit and the socket (the ExecStart binary
  replaced by this fastgw, since /srv/mysite does not exist here); any warning fails.
- nginx: `nginx -t` on a wrapper config that includes the example in http { }.
- Kubernetes: a schema check with the `kubernetes-validate` package when it is
  installed (pip install kubernetes-validate); without it, a small structural check
  of the parsed YAML (PyYAML), and without PyYAML the test is skipped.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from fgwtest import fastgw_command, subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def example(*parts):
    return os.path.join(EXAMPLES, *parts)


def fastgw_check(args, activation_names=None):
    """Run `fastgw check ARGS`; with activation_names, as if systemd passed sockets of these
    names (LISTEN_PID must be the checking process: a launcher sets it, then execs)."""
    cmd = fastgw_command() + ["check"] + args
    env = subprocess_env()
    if activation_names:
        env["LISTEN_FDS"] = str(len(activation_names))
        env["LISTEN_FDNAMES"] = ":".join(activation_names)
        launcher = ("import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); "
                    "os.execv(sys.executable, sys.argv[1:])")
        cmd = [sys.executable, "-c", launcher] + cmd
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=30)


# --------------------------------------------------------------------------
# systemd


def unit_exec_start(text):
    """The ExecStart= command of a unit, continuation lines joined, split into words."""
    joined = re.sub(r"\\\n\s*", " ", text)
    line = next(l for l in joined.splitlines() if l.startswith("ExecStart="))
    return line[len("ExecStart="):].split()


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    service = open(example("systemd", "fastgw.service"), encoding="utf-8").read()
    socket_unit = open(example("systemd", "fastgw.socket"), encoding="utf-8").read()
    binary = unit_exec_start(service)[0]
    here = shutil.which("fastgw", path=os.path.dirname(sys.executable)) or shutil.which("true")
    (tmp_path / "fastgw.service").write_text(service.replace(binary, here), encoding="utf-8")
    (tmp_path / "fastgw.socket").write_text(socket_unit, encoding="utf-8")
    proc = subprocess.run([analyze, "verify", str(tmp_path / "fastgw.socket"),
                           str(tmp_path / "fastgw.service")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    output = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, output
    # verify only warns about unknown keys and the like: any output is a finding.
    findings = [l for l in output.splitlines() if "fastgw" in l]
    assert not findings, output


def test_systemd_unit_command_line_checks():
    service = open(example("systemd", "fastgw.service"), encoding="utf-8").read()
    socket_unit = open(example("systemd", "fastgw.socket"), encoding="utf-8").read()
    words = unit_exec_start(service)
    assert words[1] == "serve"
    # fastgw speaks systemd's notify protocol (tests/test_sdnotify.py)
    assert re.search(r"^Type=notify$", service, re.M)
    assert re.search(r"^WatchdogSec=\d+$", service, re.M)
    names = re.findall(r"^FileDescriptorName=(\S+)", socket_unit, re.M)
    assert "--bind" in words and words[words.index("--bind") + 1] == "fd://" + names[0]
    proc = fastgw_check(words[2:], activation_names=names)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert 'bind = ["fd://3"]' in out, out
    assert "drain_seconds = 5.0" in out, out
    # the stop timeout covers the drain window and the graceful timeout
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", service, re.M).group(1))
    drain = float(words[words.index("--drain-seconds") + 1])
    graceful = float(words[words.index("--graceful-timeout") + 1])
    assert stop > drain + graceful


# --------------------------------------------------------------------------
# nginx


def test_nginx_example_passes_nginx_t(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    temp = tmp_path / "temp"
    temp.mkdir()
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(f"""
pid {tmp_path}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {example("nginx", "fastgw.conf")};
}}
""", encoding="utf-8")
    proc = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(wrapper)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    output = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, output
    assert "test is successful" in output, output
    assert "[warn]" not in output, output


def test_nginx_example_command_line_checks():
    text = open(example("nginx", "fastgw.conf"), encoding="utf-8").read()
    line = re.search(r"#\s+(fastgw serve .*?)(?:\n#\s+with)", text, re.S).group(1)
    words = re.sub(r"\\\n#\s*", " ", line).split()
    proc = fastgw_check(words[2:])
    assert proc.returncode == 0, proc.stderr.decode()
    # what nginx sets is what fastgw reads from a trusted proxy
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-ID"):
        assert "proxy_set_header %s " % header in text, header
    assert re.search(r"proxy_next_upstream\s+error", text)


# --------------------------------------------------------------------------
# Kubernetes


def k8s_documents():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: no YAML check")
    with open(example("kubernetes", "deployment.yaml"), encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def test_kubernetes_example_schema():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate); "
                    "test_kubernetes_example_structure still checks the manifest")
    for doc in k8s_documents():
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_example_structure():
    """A small check of what matters here, with or without the schemas: the probes hit the
    metrics listener's /readyz and /healthz, preStop exists, the grace period covers
    preStop + drain + graceful timeout, and the command passes `fastgw check`."""
    docs = k8s_documents()
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service"}
    deployment = kinds["Deployment"]
    assert deployment["apiVersion"] == "apps/v1"
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["fastgw", "serve"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics = command[command.index("--metrics") + 1]
    assert metrics.endswith(":%d" % ports["metrics"])
    assert command[command.index("--bind") + 1].endswith(":%d" % ports["http"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(command[command.index("--drain-seconds") + 1])
    graceful = float(command[command.index("--graceful-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain + graceful
    service = kinds["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] in ports
    proc = fastgw_check(command[2:])
    assert proc.returncode == 0, proc.stderr.decode()
