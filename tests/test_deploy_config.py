"""The deployment files agree with the code: template.yaml (AWS SAM), vercel.json and api/.

Every `functions/*.py` module with a Lambda `handler` must have a SAM function (its Mangum handler,
or the Lambda Web Adapter start command naming its app), a Vercel entry `api/<name>.py` and, for
each route of its router, an HTTP API event (or a Function URL that takes every path) and a
Vercel rewrite. Adding a function module without its infrastructure fails here.

template.yaml is read with PyYAML (a dev dependency), CloudFormation's short tags turned into
their long forms.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
VERCEL = ROOT / "vercel.json"
# SPEC §1: the functions that stream are deployed behind the Lambda Web Adapter; images too (one
# answer, but a generation can outlast the HTTP API's 30 seconds), and the web dashboard (its
# playground streams).
STREAMING = {"chat", "messages", "responses", "images", "web"}


# --- a reader for the YAML subset template.yaml keeps to ---------------------------------------


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    """A CloudFormation short tag as its long form (`!Ref X` -> {"Ref": "X"})."""
    name = tag[1:]
    if name in ("Ref", "Condition"):
        return {name: value}
    if name == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{name}": value}


def load_template(text: str) -> Any:
    """YAML with CloudFormation's short tags (`!Ref X` → {"Ref": "X"}); PyYAML, a dev dependency."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return _tagged("!" + suffix, value)

    Loader.add_multi_constructor("!", construct)
    return yaml.load(text, Loader=Loader)  # a SafeLoader subclass


# --- the deployment files and the function modules ---------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def vercel() -> dict[str, Any]:
    return json.loads(VERCEL.read_text())


def import_module(name: str) -> ModuleType:
    """Import a module. `Mangum(app)` makes a new event loop current at import when there is none:
    give it a temporary one, then restore the previous state, so that no loop leaks into other tests."""
    previous = getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return importlib.import_module(name)
    finally:
        asyncio.set_event_loop(previous)
        loop.close()


def function_modules() -> dict[str, ModuleType]:
    """Every functions/*.py module that is a Lambda function (it defines `handler`)."""
    modules = {}
    for path in sorted((ROOT / "functions").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = import_module(f"functions.{path.stem}")
        if hasattr(module, "handler"):
            modules[path.stem] = module
    return modules


@pytest.fixture(scope="module")
def modules() -> dict[str, ModuleType]:
    found = function_modules()
    assert {"chat", "catalog", "health"} <= set(found)
    return found


def routes(module: ModuleType) -> Iterator[tuple[str, str]]:
    """(METHOD, FastAPI path) of every route of the module's router: FastAPI's, and the plain
    Starlette routes of `fast_route` (the inference routes; /v1/embeddings is a buffered one)."""
    from starlette.routing import Route

    for route in module.router.routes:
        if isinstance(route, Route) and route.methods:
            for method in sorted(route.methods):
                yield method, route.path


def sam_path(fastapi_path: str) -> str:
    """`/v1/models/{model_id:path}` -> `/v1/models/{model_id+}` (HTTP API greedy parameter)."""
    return re.sub(r"\{(\w+):path\}", r"{\1+}", re.sub(r"\{(\w+):(?!path\})\w+\}", r"{\1}", fastapi_path))


def sample_path(fastapi_path: str) -> str:
    """A concrete path the route serves: `{x:path}` takes a slash (`openai/gpt-4o`)."""
    return re.sub(r"\{\w+\}", "sample", re.sub(r"\{\w+:path\}", "openai/gpt-4o", fastapi_path))


def vercel_source_regex(source: str) -> re.Pattern[str]:
    """The path-to-regexp subset of Vercel `source` patterns: `:name`, `:name+`, `:name*`, `(.*)`."""
    out, pos = "", 0
    for m in re.finditer(r"/:(\w+)([+*?]?)|\((\.\*|\.\+)\)", source):
        out += re.escape(source[pos : m.start()])
        if m.group(3):
            out += f"({m.group(3)})"
        else:
            out += {"": "/[^/]+", "+": "/.+", "*": "(?:/.*)?", "?": "(?:/[^/]+)?"}[m.group(2)]
        pos = m.end()
    return re.compile(out + re.escape(source[pos:]))


def sam_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def globals_function(template: dict[str, Any]) -> dict[str, Any]:
    return template.get("Globals", {}).get("Function", {})


def prop(template: dict[str, Any], resource: dict[str, Any], name: str) -> Any:
    """A function property, falling back to Globals.Function."""
    return resource["Properties"].get(name, globals_function(template).get(name))


def env(template: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    merged = dict(globals_function(template).get("Environment", {}).get("Variables", {}))
    merged.update(resource["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def function_for(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]] | None:
    """The SAM function deploying functions/<name>.py: its Mangum handler, or run.sh naming its app."""
    for logical_id, resource in sam_functions(template).items():
        handler = resource["Properties"].get("Handler")
        if handler == f"functions.{name}.handler":
            return logical_id, resource
        if (
            handler == "run.sh"
            and env(template, resource).get("GATEWAYZ_ASGI_APP") == f"functions.{name}:app"
        ):
            return logical_id, resource
    return None


def require_function(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    found = function_for(template, name)
    assert found is not None, (
        f"functions/{name}.py defines a Lambda handler but template.yaml has no function for it "
        f"(Handler: functions.{name}.handler, or run.sh with GATEWAYZ_ASGI_APP: functions.{name}:app)"
    )
    return found


def http_api_routes(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }


def load_file_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the YAML reader itself --------------------------------------------------------------------


def test_the_template_is_a_sam_template(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert str(template["AWSTemplateFormatVersion"]) == "2010-09-09"
    runtime = globals_function(template)["Runtime"]
    assert runtime in ("python3.11", "python3.12", "python3.13")


def test_every_function_module_has_a_sam_function(
    template: dict[str, Any], modules: dict[str, ModuleType]
) -> None:
    for name in modules:
        require_function(template, name)


def test_every_sam_function_points_at_code_that_exists(template: dict[str, Any]) -> None:
    from mangum import Mangum

    for logical_id, resource in sam_functions(template).items():
        handler = resource["Properties"]["Handler"]
        if handler == "run.sh":
            target = env(template, resource)["GATEWAYZ_ASGI_APP"]
            module_name, _, attribute = target.partition(":")
            assert callable(getattr(import_module(module_name), attribute)), logical_id
        else:
            module_name, _, attribute = handler.rpartition(".")
            handler_object = getattr(import_module(module_name), attribute)
            assert isinstance(handler_object, Mangum) or callable(handler_object), logical_id
        code_uri = ROOT / prop(template, resource, "CodeUri")
        assert resource["Metadata"]["BuildMethod"] == "makefile", logical_id
        makefile = (code_uri / "Makefile").read_text()
        assert re.search(rf"^build-(%|{logical_id}):", makefile, re.MULTILINE), logical_id


def test_every_route_is_served_by_its_sam_function(
    template: dict[str, Any], modules: dict[str, ModuleType]
) -> None:
    claimed: dict[tuple[str, str], str] = {}
    for name, module in modules.items():
        logical_id, resource = require_function(template, name)
        url = resource["Properties"].get("FunctionUrlConfig")
        declared = http_api_routes(resource)
        expected = {(method, sam_path(path)) for method, path in routes(module)}
        if url is None:
            missing = expected - declared
            assert not missing, f"{logical_id} has no HttpApi event for {sorted(missing)}"
        stale = declared - expected
        assert not stale, f"{logical_id} routes {sorted(stale)} that functions/{name}.py does not serve"
        for route in declared:
            assert route not in claimed, f"{route} is routed to both {claimed[route]} and {logical_id}"
            claimed[route] = logical_id
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                assert event["Properties"]["ApiId"] == {"Ref": "GatewayHttpApi"}, logical_id


def test_streaming_functions_use_the_web_adapter_behind_a_streaming_function_url(
    template: dict[str, Any], modules: dict[str, ModuleType]
) -> None:
    for name in STREAMING & set(modules):
        logical_id, resource = require_function(template, name)
        props = resource["Properties"]
        variables = env(template, resource)
        assert props["Handler"] == "run.sh", logical_id
        assert props["FunctionUrlConfig"]["InvokeMode"] == "RESPONSE_STREAM", logical_id
        assert props["FunctionUrlConfig"]["AuthType"] == "NONE", logical_id  # the gateway authenticates
        assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap", logical_id
        assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream", logical_id
        assert str(variables["AWS_LWA_PORT"]).isdigit(), logical_id
        assert variables["AWS_LWA_READINESS_CHECK_PATH"].startswith("/"), logical_id
        # The app's peer is the adapter on loopback: trust it to pass the caller's X-Forwarded-For.
        assert "127.0.0.1" in variables.get("GATEWAYZ_TRUSTED_PROXIES", ""), logical_id
        assert not props.get("Events"), f"{logical_id}: streamed routes must not go through the HTTP API"
        assert "LambdaAdapterLayer" in json.dumps(props["Layers"]), logical_id
        assert prop(template, resource, "Timeout") > globals_function(template)["Timeout"], logical_id
    run_sh = (ROOT / "infra/lambda/run.sh").read_text()
    assert "uvicorn" in run_sh and "$GATEWAYZ_ASGI_APP" in run_sh.replace("{", "").replace("}", "")
    assert "AWS_LWA_PORT" in run_sh


def test_buffered_functions_use_mangum_behind_the_http_api(
    template: dict[str, Any], modules: dict[str, ModuleType]
) -> None:
    from mangum import Mangum

    for name in set(modules) - STREAMING:
        logical_id, resource = require_function(template, name)
        assert resource["Properties"]["Handler"] == f"functions.{name}.handler", logical_id
        assert isinstance(modules[name].handler, Mangum), name
        assert "FunctionUrlConfig" not in resource["Properties"], logical_id


def test_the_configuration_contract_comes_from_parameters(template: dict[str, Any]) -> None:
    variables = globals_function(template)["Environment"]["Variables"]
    parameters = template["Parameters"]
    contract = {
        "GATEWAYZ_DATABASE_URL": True,
        "GATEWAYZ_ADMIN_KEY": True,
        "GATEWAYZ_KEY_SECRET": True,
        "GATEWAYZ_REDIS_URL": True,
        "UPSTASH_REDIS_REST_URL": False,
        "UPSTASH_REDIS_REST_TOKEN": True,
        "GATEWAYZ_ENCRYPTION_KEYS": True,
    }
    for name, secret in contract.items():
        ref = variables[name]
        assert isinstance(ref, dict) and set(ref) == {"Ref"}, name
        parameter = parameters[ref["Ref"]]
        if secret:
            assert parameter.get("NoEcho") is True, f"{name} is a secret: its parameter must be NoEcho"
    for value in variables.values():  # nothing secret-looking is written into the template
        assert isinstance(value, dict) or not re.search(r"sk-|key_|token", str(value), re.IGNORECASE)
    for resource in sam_functions(template).values():
        for value in env(template, resource).values():
            if isinstance(value, dict) and "Ref" in value and not value["Ref"].startswith("AWS::"):
                assert value["Ref"] in parameters
    assert parameters["GatewayzAdminKey"]["MinLength"] >= 16  # shared/config.py rejects shorter keys
    assert parameters["GatewayzKeySecret"]["MinLength"] >= 32


def test_the_lambda_build_matches_the_template(template: dict[str, Any]) -> None:
    build = load_file_module(ROOT / "infra/lambda/build.py", "gatewayz_lambda_build")
    assert globals_function(template)["Runtime"] == f"python{build.LAMBDA_PYTHON}"
    assert globals_function(template)["Architectures"] == [build.LAMBDA_ARCH]
    pyproject = build.project()
    assert set(build.packages(pyproject)) >= {"shared", "functions"}
    assert not any(
        dep.split("=")[0] in ("pytest", "openai", "anthropic") for dep in build.dependencies(pyproject)
    )
    for script in build.SCRIPTS:
        assert (ROOT / "infra/lambda" / script).is_file(), script
    assert build.platforms("3.12", "x86_64")[0] == "manylinux2014_x86_64"
    assert build.platforms("3.11", "arm64") == ["manylinux2014_aarch64"]
    wrapper = globals_function(template)["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"]
    assert wrapper == "/var/task/with-secrets.sh" and "with-secrets.sh" in build.SCRIPTS


# --- Vercel ------------------------------------------------------------------------------------


def test_every_function_module_has_a_vercel_entry(
    vercel: dict[str, Any], modules: dict[str, ModuleType]
) -> None:
    functions_config = vercel["functions"]
    for name, module in modules.items():
        path = ROOT / "api" / f"{name}.py"
        assert path.is_file(), f"functions/{name}.py has no Vercel entry api/{name}.py"
        entry = load_file_module(path, f"gatewayz_vercel_{name}")
        assert entry.app is module.app, f"api/{name}.py must export functions.{name}.app as `app`"
        # Vercel's runtime takes a top-level `handler` for a BaseHTTPRequestHandler class.
        assert not hasattr(entry, "handler"), f"api/{name}.py must not export `handler`"
        config = functions_config.get(f"api/{name}.py")
        assert config is not None, f"vercel.json has no functions entry for api/{name}.py"
        assert isinstance(config["maxDuration"], int) and config["maxDuration"] > 0
    for pattern in functions_config:
        assert (ROOT / pattern).is_file(), f"vercel.json configures {pattern}, which does not exist"
    assert functions_config["api/chat.py"]["maxDuration"] >= max(
        c["maxDuration"] for c in functions_config.values()
    )
    assert vercel.get("framework", "missing") is None  # file-based /api functions, no framework preset


def test_every_route_is_rewritten_to_its_vercel_function(
    vercel: dict[str, Any], modules: dict[str, ModuleType]
) -> None:
    rewrites = [(vercel_source_regex(r["source"]), r["destination"]) for r in vercel["rewrites"]]
    for name, module in modules.items():
        for method, path in routes(module):
            concrete = sample_path(path)
            destinations = [dest for regex, dest in rewrites if regex.fullmatch(concrete)]
            assert destinations, f"vercel.json has no rewrite for {method} {path} (functions/{name}.py)"
            # Vercel applies the first matching rewrite.
            assert destinations[0] == f"/api/{name}", f"{method} {path} is rewritten to {destinations[0]}"
    for rewrite in vercel["rewrites"]:
        destination = rewrite["destination"]
        assert destination.startswith("/api/") and (ROOT / f"{destination[1:]}.py").is_file(), destination
    for cron in vercel.get("crons", []):  # a cron calls a public path or an api/ file directly
        path = cron["path"].split("?")[0]
        direct = path.startswith("/api/") and (ROOT / f"{path[1:]}.py").is_file()
        assert direct or any(regex.fullmatch(path) for regex, _ in rewrites), cron


def test_the_vercel_source_patterns() -> None:
    assert vercel_source_regex("/v1/models/:model_id+").fullmatch("/v1/models/openai/gpt-4o")
    assert not vercel_source_regex("/v1/models/:model_id+").fullmatch("/v1/models")
    assert vercel_source_regex("/v1/models/:id").fullmatch("/v1/models/x")
    assert not vercel_source_regex("/v1/models/:id").fullmatch("/v1/models/a/b")
    assert vercel_source_regex("/(.*)").fullmatch("/anything/at/all")
    assert sam_path("/v1/models/{model_id:path}") == "/v1/models/{model_id+}"
    assert sam_path("/v1/keys/{key_id:int}") == "/v1/keys/{key_id}"
    assert sample_path("/v1/models/{model_id:path}") == "/v1/models/openai/gpt-4o"


# --- observability and the deploy docs (issue 16) ----------------------------------------------


def test_every_function_logs_through_powertools_with_a_retained_log_group(
    template: dict[str, Any], modules: dict[str, ModuleType]
) -> None:
    from shared.observe.lambda_handler import ObservedMangum

    for name, module in modules.items():
        assert isinstance(module.handler, ObservedMangum), (
            f"functions/{name}.py: use lambda_handler(app, name)"
        )
        assert module.handler.function == name
    variables = globals_function(template)["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] and variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert variables["POWERTOOLS_TRACE_DISABLED"] == "true"  # X-Ray off by default
    groups = {
        resource["Properties"]["LogGroupName"]["Fn::Sub"]: resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Logs::LogGroup"
    }
    for logical_id in sam_functions(template):
        group = groups.get(f"/aws/lambda/${{{logical_id}}}")
        assert group is not None, f"{logical_id} has no log group (its logs would be kept forever)"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert (
        template["Parameters"]["LogRetentionDays"]["Default"]
        in template["Parameters"]["LogRetentionDays"]["AllowedValues"]
    )


def test_the_infra_readme_describes_what_the_template_deploys(template: dict[str, Any]) -> None:
    readme = (ROOT / "infra/README.md").read_text()
    for logical_id, resource in sam_functions(template).items():
        assert f"`{logical_id}`" in readme, f"infra/README.md does not describe {logical_id}"
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "Schedule":
                assert event["Properties"]["Schedule"] in readme, f"{logical_id}'s schedule is not documented"
    for parameter in template["Parameters"]:
        assert f"`{parameter}`" in readme, f"infra/README.md does not document the parameter {parameter}"
    for variable in globals_function(template)["Environment"]["Variables"]:
        assert f"`{variable}`" in readme, f"infra/README.md does not document {variable}"
    for cited in re.findall(r"`((?:infra|functions|shared|api|tests|bench)/[\w./-]+)`", readme):
        assert (ROOT / cited).exists(), f"infra/README.md cites {cited}, which does not exist"
    for command in ("sam build", "sam deploy", "vercel"):
        assert command in readme
