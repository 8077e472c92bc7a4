from civicloop.requests.models import RequestStatus, WorkOrderStatus
from tests.helpers import closed


def test_whole_loop_closes(session, settings, city):
    request = closed(session, settings, unit_id=city["D01-S01"])
    assert request.status == RequestStatus.CLOSED
    assert [o.status for o in request.work_orders] == [WorkOrderStatus.CLOSED]
