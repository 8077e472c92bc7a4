"""A third-party Open311 client from PyPI (``georeport`` 0.3.1) against a real ``civicloop serve``:
a temporary SQLite database built by ``civicloop init``, an API key made by ``civicloop open311
add-key``, the server started as a subprocess on a free port.

georeport reads services, service definitions and requests (JSON and XML, the XML parsed with
xmltodict) but has no method to file a request; the request is filed with the spec's form POST
built from the client's own settings (``root_address``, ``api_key``, ``jurisdiction``) through
``requests``, the HTTP library georeport itself uses, and read back with georeport.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

georeport = pytest.importorskip("georeport", reason="the georeport client is a dev dependency")
requests = pytest.importorskip("requests")

from tests.helpers import serving  # noqa: E402

CLI = str(Path(sys.executable).with_name("civicloop"))
LAMP = "路灯不亮"



@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running ``civicloop serve`` on a fresh database; yields (root address, API key)."""
    home = tmp_path_factory.mktemp("open311-serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICLOOP_")}
    env.update(CIVICLOOP_DATABASE_URL=f"sqlite:///{home / 'civicloop.db'}", CIVICLOOP_MODEL_PATH=str(home / "none"))
    run = lambda *args: subprocess.run([CLI, *args], cwd=home, env=env, capture_output=True, text=True,  # noqa: E731
                                       timeout=300, check=True)
    run("init")
    added = run("open311", "add-key", "georeport-test")
    key = next(line for line in added.stdout.split() if line.startswith("o311_"))
    with serving(CLI, home, env) as root:
        yield f"{root}/open311/v2", key


def file_with(client: georeport.GeoReport, **fields: str) -> list[dict]:
    """POST requests.json with the client's settings (georeport 0.3.1 has no method for it)."""
    data = {"api_key": client.api_key, "jurisdiction_id": client.jurisdiction, **fields}
    response = requests.post(f"{client.root_address}/requests.{client.output_format}", data=data, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def test_georeport_lists_files_and_reads_back(server: tuple[str, str]) -> None:
    root, key = server
    client = georeport.GeoReport(root, jurisdiction="civicloop.example", api_key=key)
    services = client.get_service_list()
    lamp = next(s for s in services if s["service_name"] == LAMP)
    assert (lamp["metadata"], lamp["type"], lamp["group"]) == (True, "realtime", "城乡建设")
    definition = client.get_service_definition(lamp["service_code"])
    assert {a["datatype"] for a in definition["attributes"]} >= {"string", "number", "datetime", "text",
                                                                  "multivaluelist"}

    filed = file_with(client, service_code=lamp["service_code"], lat="39.905", long="116.405",
                      description="三号楼前路灯坏了一周，夜里很黑。", phone="13812341234", first_name="三",
                      last_name="张", **{"attribute[people_affected]": "3"})
    rid = filed[0]["service_request_id"]
    assert filed[0]["service_notice"].startswith("已派至望湖街道办理")

    request = client.get_service_request(str(rid))
    assert (request["service_request_id"], request["status"], request["service_code"]) == (
        rid, "open", lamp["service_code"])
    assert (request["agency_responsible"], request["expected_datetime"] is not None) == ("望湖街道", True)
    assert request["description"].startswith("三号楼前路灯坏了一周")
    assert "13812341234" not in str(request) and "张三" not in str(request)
    assert [r["service_request_id"] for r in client.get_service_requests(status="open")] == [rid]
    assert client.get_service_requests(service_code=lamp["service_code"], status="closed") == []


def test_georeport_reads_xml(server: tuple[str, str]) -> None:
    root, key = server
    client = georeport.GeoReport(root, jurisdiction="civicloop.example", api_key=key, output_format="xml")
    services = client.get_service_list()
    lamp = next(s for s in services if s["service_name"] == LAMP)
    assert lamp["metadata"] == "true"
    definition = client.get_service_definition(lamp["service_code"])
    assert definition["service_code"] == lamp["service_code"]
    codes = [a["code"] for a in definition["attributes"]["attribute"]]
    assert codes == ["title", "occurred_at", "people_affected", "location_details", "contact_time"]
    json_client = georeport.GeoReport(root, api_key=key)
    rid = file_with(json_client, service_code=lamp["service_code"], address_string="望湖街道第一社区三号楼",
                    description="楼道灯也不亮")[0]["service_request_id"]
    request = client.get_service_request(str(rid))  # one request: xmltodict gives a dict
    assert (request["service_request_id"], request["status"], request["address"]) == (
        str(rid), "open", "望湖街道第一社区三号楼")
    listed = client.get_service_requests(service_request_id=str(rid))
    assert listed["service_request_id"] == str(rid)
