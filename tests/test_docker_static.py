"""Static checks of the docker/ stack (no container engine needed) and of docs/install.md.

The stack cannot be started on the project's machines, so it is kept correct by
construction: these tests parse docker/compose.yaml with docker/.env the way
`docker compose --env-file docker/.env` interpolates it, and check pinning, files,
secrets, the iRODS package versions and the server_config.json patch script.
"""

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = os.path.join(ROOT, "docker")
COMPOSE = os.path.join(DOCKER, "compose.yaml")
ENV_FILE = os.path.join(DOCKER, ".env")
IRODS_DOCKERFILE = os.path.join(DOCKER, "irods", "Dockerfile")
CONFIGURE = os.path.join(DOCKER, "irods", "configure_server.py")
SAMPLE_SERVER_CONFIG = os.path.join(ROOT, "tests", "data", "server_config_sample.json")
INSTALL_DOC = os.path.join(ROOT, "docs", "install.md")
LOADER = os.path.join(ROOT, "core.py.d", "core_py_loader.py.txt")

PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}, and $NAME; "$$" escapes.
_VAR = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")
_SECRET_KEY = re.compile(r"(?i)(password|passwd|pass$|secret|token|_key$|^key$|rootpass)")
# KEY: value / KEY=value / "key": "value" with a secret-looking key (not inside ${...}).
_SECRET_ASSIGNMENT = re.compile(
    r"""(?im)(?<![\w.{-])["']?([A-Za-z0-9_.-]*(?:password|passwd|secret|token|_key))["']?"""
    r"""\s*[:=]\s*["']?([^"'\s,}]*)""")


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def env():
    make_client_envs = _load_module("docker_make_client_envs", os.path.join(DOCKER, "make_client_envs.py"))
    return make_client_envs.read_env_file(ENV_FILE)


@pytest.fixture(scope="module")
def compose_text():
    with open(COMPOSE, encoding="utf-8") as f:
        return f.read()


def _interpolate(text, env):
    # Like docker compose: an undefined variable becomes "" (the test above names it).
    def sub(m):
        name = m.group(1) or m.group(2)
        return env.get(name, "")

    return _VAR.sub(sub, text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose(compose_text, env):
    """compose.yaml as docker compose sees it with --env-file docker/.env."""
    return yaml.safe_load(_interpolate(compose_text, env))


@pytest.fixture(scope="module")
def raw_compose(compose_text):
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def configure():
    return _load_module("docker_configure_server", CONFIGURE)


def _dockerfile_args(path):
    """ARG name -> default (None when the ARG has no default)."""
    args = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", line)
            if m:
                args[m.group(1)] = m.group(2)
    return args


def _resolve(text, values):
    def sub(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return _VAR.sub(sub, text)


def _build_args(service):
    build = service["build"]
    return {str(k): str(v) for k, v in (build.get("args") or {}).items()}


# ------------------------------------------------------------------ compose + .env


def test_compose_parses_and_has_the_stack(compose):
    services = compose["services"]
    for name in ("irods-catalog-db", "irods-provider", "omero-db", "omero-server", "omero-scripts", "omero-web"):
        assert name in services, name
    assert compose["name"], "the project has a name"


def test_every_variable_used_in_compose_is_defined_in_env(compose_text, env):
    used = {m.group(1) or m.group(2) for m in _VAR.finditer(compose_text)}
    assert used, "compose.yaml takes its values from docker/.env"
    missing = sorted(used - set(env))
    assert not missing, "used in compose.yaml but not defined in docker/.env: {}".format(missing)


def test_env_file_defines_every_value_once_and_none_empty():
    names = []
    with open(ENV_FILE, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                assert value.strip(), "{} has no value in docker/.env".format(name)
                names.append(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, duplicates


def _assert_pinned_image(ref, where):
    name, _, tag = ref.rpartition(":")
    assert name and tag and "/" not in tag, "{}: image {!r} has no tag".format(where, ref)
    assert "@" not in name or tag, where
    assert tag.lower() != "latest" and "latest" not in tag.lower(), "{}: {!r} is not pinned".format(where, ref)
    assert re.search(r"\d", tag), "{}: tag of {!r} names no version".format(where, ref)


def test_every_service_image_is_pinned(compose):
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        if "image" in service:
            _assert_pinned_image(service["image"], "service " + name)


def test_every_build_context_and_dockerfile_exists_and_its_base_image_is_pinned(compose, env):
    builds = {n: s for n, s in compose["services"].items() if "build" in s}
    assert set(builds) == {"irods-provider", "omero-server"}
    for name, service in builds.items():
        context = os.path.normpath(os.path.join(DOCKER, service["build"]["context"]))
        assert os.path.isdir(context), "{}: build context {} does not exist".format(name, context)
        dockerfile = os.path.join(context, service["build"].get("dockerfile", "Dockerfile"))
        assert os.path.isfile(dockerfile), "{}: {} does not exist".format(name, dockerfile)

        args = _dockerfile_args(dockerfile)
        given = _build_args(service)
        undefaulted = {a for a, default in args.items() if default is None}
        assert undefaulted <= set(given), "{}: build args not given by compose: {}".format(
            name, sorted(undefaulted - set(given)))
        assert not (set(given) - set(args)), "{}: compose passes unknown build args {}".format(
            name, sorted(set(given) - set(args)))
        values = {a: d for a, d in args.items() if d is not None}
        values.update(given)
        with open(dockerfile, encoding="utf-8") as f:
            froms = [line.split()[1] for line in f if line.strip().upper().startswith("FROM ")]
        assert froms, dockerfile
        for ref in froms:
            _assert_pinned_image(_resolve(ref, values), "{} FROM".format(name))


def test_bind_mounted_host_paths_exist_and_named_volumes_are_declared(compose):
    declared = set((compose.get("volumes") or {}).keys())
    binds = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                source, kind = volume.get("source"), volume.get("type")
            else:
                source, kind = volume.split(":")[0], None
            if kind == "bind" or source.startswith((".", "/", "~")):
                binds += 1
                path = os.path.normpath(os.path.join(DOCKER, source))
                assert os.path.exists(path), "{}: bind-mounted {} does not exist".format(name, path)
            else:
                assert source in declared, "{}: named volume {} is not declared".format(name, source)
    assert binds >= 2, "the scripts directory and the upload script are bind-mounted"


def test_ports_are_published_on_the_configured_address_only(compose, env):
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            assert str(port).startswith(env["HOST_BIND_ADDRESS"] + ":"), "{}: {}".format(name, port)


def test_secrets_are_only_referenced_from_env(raw_compose):
    """In compose.yaml every password/key-like setting is a bare ${VAR} from docker/.env."""
    checked = 0
    for name, service in raw_compose["services"].items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            if _SECRET_KEY.search(key):
                checked += 1
                assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", str(value)), (
                    "{}: {} must be a ${{VAR}} from docker/.env, not a literal".format(name, key))
        build_args = (service.get("build") or {}).get("args") or {}
        for key in build_args:
            assert not _SECRET_KEY.search(str(key)), "{}: no secret as a build arg ({})".format(name, key)
    assert checked >= 8


def _docker_files():
    for top, _dirs, files in os.walk(DOCKER):
        for f in files:
            if f != ".env":
                yield os.path.join(top, f)


def test_no_secret_value_from_env_is_committed_elsewhere_in_docker(env):
    secrets = {k: v for k, v in env.items() if _SECRET_KEY.search(k)}
    assert {"IRODS_ADMIN_PASSWORD", "IRODS_SERVICE_ACCOUNT_PASSWORD", "OMERO_ROOT_PASSWORD"} <= set(secrets)
    # Short values ("rods", "omero") are also ordinary words in these files; the
    # structural check above covers them. Distinctive values must appear nowhere.
    distinctive = {k: v for k, v in secrets.items() if len(v) >= 8}
    assert distinctive
    for path in _docker_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for key, value in distinctive.items():
            assert value not in text, "{} contains the value of {} from docker/.env".format(path, key)
        # Config-like assignments of secret-looking keys must take their value from a variable.
        if path.endswith((".yaml", ".template", "Dockerfile", ".sh")):
            for m in _SECRET_ASSIGNMENT.finditer(text):
                key, value = m.group(1), m.group(2)
                assert value == "" or value.startswith("$"), "{}: {} = {!r} is a literal secret".format(
                    path, key, value)


# ------------------------------------------------------------------ iRODS image


def test_irods_packages_and_python_plugin_are_pinned_to_the_same_irods_release(compose, env):
    args = _build_args(compose["services"]["irods-provider"])
    with open(IRODS_DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    # Shell variables the RUN step builds from the ARGs.
    shell_vars = {m.group(1): _resolve(m.group(2), args)
                  for m in re.finditer(r'(\w+)="([^"]*\$\{[^"]*)"\s*\\?\n', text)}
    values = dict(args)
    values.update(shell_vars)
    pins = {}
    for m in re.finditer(r'"?(irods-[a-z-]+)=([^"\s]+)"?', text):
        pins[m.group(1)] = _resolve(m.group(2), values)

    irods_version = env["IRODS_VERSION"]
    assert re.fullmatch(r"(4\.3|5\.0)\.\d+", irods_version), "iRODS 4.3.x or 5.0.x"
    revision, codename = env["IRODS_PACKAGE_REVISION"], env["IRODS_DEBIAN_CODENAME"]
    server_deb = "{}-{}~{}".format(irods_version, revision, codename)
    for package in ("irods-runtime", "irods-server", "irods-icommands", "irods-database-plugin-postgres"):
        assert pins.get(package) == server_deb, (package, pins.get(package))

    plugin = pins.get("irods-rule-engine-plugin-python")
    assert plugin, "the Python rule engine plugin is installed with a pinned version"
    plugin_version, _, rest = plugin.partition("-")
    # The plugin package is built against one exact iRODS release: "+<irods version>~<codename>".
    assert rest == "{}+{}~{}".format(env["IRODS_PYTHON_PLUGIN_PACKAGE_REVISION"], irods_version, codename), plugin
    assert plugin_version == env["IRODS_PYTHON_PLUGIN_VERSION"]
    assert plugin_version.split(".")[:2] == irods_version.split(".")[:2], "same iRODS release series"
    assert "apt-mark hold" in text


def test_irods_image_installs_the_project_for_system_python3(env):
    with open(IRODS_DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    assert re.search(r"FROM debian:\$\{DEBIAN_VERSION\}", text)
    assert env["IRODS_DEBIAN_CODENAME"] == "bookworm" and env["DEBIAN_VERSION"].startswith("12")
    install = re.search(r"python3 -m pip install[^\n]*\\\n(?:[^\n]*\\\n)*[^\n]*", text).group(0)
    assert "--break-system-packages" in install, "Debian 12's python3 is externally managed"
    assert "[server]" in install and "venv" not in install
    for package in ("libarchive13", "python3-pip"):
        assert package in text


def test_files_the_irods_image_copies_exist_and_pass_the_dockerignore():
    with open(IRODS_DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    sources = re.findall(r"/tmp/omero-snapshots-src/([^\s\\]+)", text)
    assert len(sources) >= 6
    with open(IRODS_DOCKERFILE + ".dockerignore", encoding="utf-8") as f:
        allowed = [line.strip()[1:].rstrip("/") for line in f if line.strip().startswith("!")]
    for source in sources:
        if source.startswith("[") or source == "":
            continue
        matches = [p for p in _glob(source)]
        assert matches, "the Dockerfile copies {} which does not exist".format(source)
        assert any(source == a or source.startswith(a + "/") for a in allowed), (
            "{} is excluded by Dockerfile.dockerignore".format(source))


def _glob(pattern):
    import glob

    return glob.glob(os.path.join(ROOT, pattern))


def test_entrypoint_and_helpers_are_executable_shell_scripts():
    for rel in ("irods/entrypoint.sh", "irods/healthcheck.sh", "omero/upload_scripts.sh",
                "irods/configure_server.py"):
        path = os.path.join(DOCKER, rel)
        assert os.stat(path).st_mode & stat.S_IXUSR, rel
        if rel.endswith(".sh"):
            assert subprocess.run(["bash", "-n", path]).returncode == 0, rel


# ---------------------------------------------------- server_config.json patch


def _engine_names(doc):
    return [e["instance_name"] for e in doc["plugin_configuration"]["rule_engines"]]


def _run_configure(*args):
    return subprocess.run([sys.executable, CONFIGURE] + list(args), capture_output=True, text=True)


def test_patch_script_puts_the_python_instance_before_the_native_one(tmp_path):
    path = tmp_path / "server_config.json"
    shutil.copy(SAMPLE_SERVER_CONFIG, path)
    os.chmod(path, 0o600)
    before = json.loads(path.read_text())
    assert PYTHON_INSTANCE not in _engine_names(before)

    result = _run_configure("add-python-rep", str(path))
    assert result.returncode == 0, result.stderr
    after = json.loads(path.read_text())
    names = _engine_names(after)
    assert names.index(PYTHON_INSTANCE) < names.index(NATIVE_INSTANCE)
    assert names == [PYTHON_INSTANCE] + _engine_names(before)
    stanza = after["plugin_configuration"]["rule_engines"][0]
    assert stanza == {"instance_name": PYTHON_INSTANCE, "plugin_name": "irods_rule_engine_plugin-python",
                      "plugin_specific_configuration": {}}
    # Everything else is untouched, and the file keeps its mode.
    del after["plugin_configuration"]["rule_engines"][0]
    assert after == before
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    again = _run_configure("add-python-rep", str(path))
    assert again.returncode == 0 and "already before" in again.stdout
    assert _engine_names(json.loads(path.read_text())) == names


def test_patch_script_moves_a_python_instance_listed_after_the_native_one(tmp_path, configure):
    doc = json.loads(open(SAMPLE_SERVER_CONFIG).read())
    custom = {"instance_name": PYTHON_INSTANCE, "plugin_name": "irods_rule_engine_plugin-python",
              "plugin_specific_configuration": {"regexes_for_supported_peps": ["ac[^ ]*"]}}
    doc["plugin_configuration"]["rule_engines"].append(custom)
    changed, doc = configure.insert_python_rep(doc)
    assert changed
    names = _engine_names(doc)
    assert names.count(PYTHON_INSTANCE) == 1
    assert names.index(PYTHON_INSTANCE) == names.index(NATIVE_INSTANCE) - 1
    assert custom in doc["plugin_configuration"]["rule_engines"], "an admin's own settings are kept"


def test_patch_script_refuses_a_config_without_the_native_instance(tmp_path):
    doc = json.loads(open(SAMPLE_SERVER_CONFIG).read())
    doc["plugin_configuration"]["rule_engines"] = [
        e for e in doc["plugin_configuration"]["rule_engines"] if e["instance_name"] != NATIVE_INSTANCE]
    path = tmp_path / "server_config.json"
    path.write_text(json.dumps(doc))
    result = _run_configure("add-python-rep", str(path))
    assert result.returncode == 1 and NATIVE_INSTANCE in result.stderr
    assert json.loads(path.read_text()) == doc


# ------------------------------------------------------------------ templates


def test_unattended_install_template_renders_from_env(tmp_path, env, configure):
    out = tmp_path / "unattended.json"
    environ = dict(env)
    configure.render(os.path.join(DOCKER, "irods", "unattended_install.json.template"), str(out), environ)
    text = out.read_text()
    assert "${" not in text
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600, "it holds passwords"
    doc = json.loads(text)
    for key in ("admin_password", "default_resource_name", "host_system_information", "server_config",
                "service_account_environment"):
        assert key in doc
    sc = doc["server_config"]
    assert sc["zone_name"] == env["IRODS_ZONE_NAME"] and sc["zone_port"] == int(env["IRODS_PORT"])
    assert sc["host"] == env["IRODS_HOST"] and sc["catalog_provider_hosts"] == [env["IRODS_HOST"]]
    assert len(sc["negotiation_key"]) == 32
    assert sc["server_port_range_start"] == int(env["IRODS_DATA_PORT_START"])
    assert sc["plugin_configuration"]["database"]["port"] == int(env["IRODS_DB_PORT"])
    assert doc["service_account_environment"]["irods_port"] == int(env["IRODS_PORT"])
    # setup_irods.py writes this server_config; the patch then adds the Python REP.
    changed, sc = configure.insert_python_rep(sc)
    assert changed and _engine_names(sc)[0] == PYTHON_INSTANCE

    environ.pop("IRODS_ZONE_KEY")
    with pytest.raises(configure.ConfigureError):
        configure.render(os.path.join(DOCKER, "irods", "unattended_install.json.template"), str(out), environ)


def test_render_escapes_values_inside_json_strings(tmp_path, configure):
    template = tmp_path / "t.json"
    template.write_text('{"a": "${X}", "b": "x-${X}-y", "n": "${N:int}"}')
    configure.render(str(template), str(tmp_path / "o.json"), {"X": 'quote " and \\ back', "N": "7"})
    assert json.loads((tmp_path / "o.json").read_text()) == {
        "a": 'quote " and \\ back', "b": 'x-quote " and \\ back-y', "n": 7}


def test_policy_config_template_is_a_valid_policy_configuration(tmp_path, env, configure):
    config = pytest.importorskip("policy.config")
    out = tmp_path / "config.json"
    configure.render(os.path.join(DOCKER, "irods", "omero_snapshots_config.json.template"), str(out), dict(env))
    parsed = config.load_config(str(out))
    assert parsed.zone == env["IRODS_ZONE_NAME"]
    assert parsed.service_account == env["IRODS_SERVICE_ACCOUNT"]
    assert parsed.landing_collection == "/{}/home/{}/{}".format(
        env["IRODS_ZONE_NAME"], env["IRODS_SERVICE_ACCOUNT"], env["IRODS_LANDING_NAME"])
    assert parsed.snapshot_root_for("alice") == "/{}/home/alice/omero-snapshots".format(env["IRODS_ZONE_NAME"])
    assert parsed.mapping_file == str(tmp_path / "mapping.json")


def test_client_environment_files_are_private_and_decode_to_the_password(tmp_path, configure):
    obf = pytest.importorskip("irods.password_obfuscation")
    directory = tmp_path / "svc"
    uid, gid = os.getuid(), os.getgid()
    configure.write_client_env(str(directory), "irods-provider", 1247, "tempZone", "omero-svc", "s3cr3t-pw",
                               uid, gid, consumer_dir="/opt/omero/server/.irods")
    try:
        env_doc = json.loads((directory / "irods_environment.json").read_text())
        assert env_doc["irods_user_name"] == "omero-svc" and env_doc["irods_port"] == 1247
        assert env_doc["irods_authentication_file"] == "/opt/omero/server/.irods/.irodsA"
        scrambled = (directory / ".irodsA").read_text()
        assert "s3cr3t-pw" not in scrambled
        assert obf.decode(scrambled, uid=uid) == "s3cr3t-pw"
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o500
        for name in ("irods_environment.json", ".irodsA"):
            st = os.stat(directory / name)
            assert stat.S_IMODE(st.st_mode) == 0o400 and st.st_uid == uid
    finally:
        os.chmod(directory, 0o700)


def test_omero_gets_a_settings_file_naming_the_server_users_are_enrolled_under(tmp_path, configure, env):
    """OMERO's script processor passes scripts no custom variables: the stack writes omero_snapshots.json."""
    from omero_client.settings import load_site_settings

    directory = tmp_path / "svc"
    configure.write_client_env(str(directory), "irods-provider", 1247, "tempZone", "omero-svc", "pw",
                               os.getuid(), os.getgid(), consumer_dir="/opt/omero/server/.irods",
                               omero_server_name=env["OMERO_HOST"])
    try:
        site = load_site_settings({"OMERO_SNAPSHOTS_SETTINGS": str(directory / "omero_snapshots.json")})
        assert site.values == {"settings_version": 1, "server_name": env["OMERO_HOST"]}
    finally:
        os.chmod(directory, 0o700)
    entry = open(os.path.join(ROOT, "docker", "irods", "entrypoint.sh"), encoding="utf-8").read()
    assert '--omero-server-name "$OMERO_HOST"' in entry


def test_make_client_envs_writes_the_service_and_admin_environments(tmp_path, env):
    pytest.importorskip("irods.password_obfuscation")
    script = os.path.join(DOCKER, "make_client_envs.py")
    result = subprocess.run([sys.executable, script, "--out", str(tmp_path / "envs")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    exports = dict(line[len("export "):].split("=", 1) for line in result.stdout.splitlines())
    svc = json.loads(open(exports["IRODS_ENVIRONMENT_FILE"]).read())
    admin = json.loads(open(exports["IRODS_ADMIN_ENVIRONMENT_FILE"]).read())
    assert svc["irods_user_name"] == env["IRODS_SERVICE_ACCOUNT"]
    assert admin["irods_user_name"] == env["IRODS_ADMIN_USER"]
    assert svc["irods_host"] == "localhost" and svc["irods_port"] == int(env["IRODS_PORT"])
    for d in ("omero-svc", "admin"):
        os.chmod(tmp_path / "envs" / d, 0o700)


# ------------------------------------------------------------------ OMERO side


def test_omero_image_and_script_registration(compose, env):
    server = compose["services"]["omero-server"]
    mounts = [v for v in server["volumes"] if str(v).startswith("omero-svc-irods-env:")]
    assert mounts == ["omero-svc-irods-env:/opt/omero/server/.irods:ro"], "read-only, at omero-server's ~/.irods"
    assert server["environment"]["OMERO_IRODS_ENVIRONMENT_FILE"] == "/opt/omero/server/.irods/irods_environment.json"
    with open(os.path.join(DOCKER, "omero", "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    assert "/opt/omero/server/venv3/bin/python -m pip install" in dockerfile
    for pin in ("omero-cli-transfer==${OMERO_CLI_TRANSFER_VERSION}",
                "python-irodsclient==${PYTHON_IRODSCLIENT_VERSION}"):
        assert pin in dockerfile
    assert env["OMERO_SERVER_IMAGE"].startswith("openmicroscopy/omero-server:")
    assert env["OMERO_WEB_IMAGE"].startswith("openmicroscopy/omero-web")

    scripts = compose["services"]["omero-scripts"]
    assert "../omero_client/scripts:/opt/omero-snapshots/scripts:ro" in scripts["volumes"]
    with open(os.path.join(DOCKER, "omero", "upload_scripts.sh"), encoding="utf-8") as f:
        upload = f.read()
    for name in ("Save_to_iRODS.py", "List_iRODS_Snapshots.py", "Load_from_iRODS.py"):
        assert name in upload
    assert "script upload --official" in upload


# ------------------------------------------------------------------ install guide


def test_install_guide_loader_lines_match_the_shipped_loader():
    if not os.path.exists(LOADER):
        pytest.skip("core.py.d/core_py_loader.py.txt is not in the repository yet")
    with open(LOADER, encoding="utf-8") as f:
        loader = f.read().strip()
    with open(INSTALL_DOC, encoding="utf-8") as f:
        doc = f.read()
    blocks = [b.strip() for b in re.findall(r"```[a-z]*\n(.*?)```", doc, flags=re.S)]
    assert loader in blocks, "docs/install.md must show core.py.d/core_py_loader.py.txt verbatim"
    # The guide's upgrade and uninstall steps cut the block out of core.py between these markers.
    lines = loader.splitlines()
    assert lines[0].startswith("# --- omero-snapshots:") and lines[-1] == "# --- end omero-snapshots ---"
    assert "sed -i '/^# --- omero-snapshots:/,/^# --- end omero-snapshots ---$/d' /etc/irods/core.py" in doc


def test_install_guide_names_the_fixed_facts():
    with open(INSTALL_DOC, encoding="utf-8") as f:
        doc = f.read()
    for needle in ("iadmin mkuser omero-svc rodsuser", "/etc/irods/core.py.d/",
                   "/etc/irods/omero_snapshots/config.json", PYTHON_INSTANCE,
                   "--break-system-packages", "ichmod noinherit", "omero-snapshots enrol",
                   "omero_snapshots_doctor"):
        assert needle in doc, needle
