"""Messages in the user's language: Simplified Chinese first, English on request.

The catalogue below maps a stable message code to its Chinese and English text (``str.format``
placeholders). The client's language comes from ``Accept-Language`` (RFC 9110 §12.5.4): the first
of ``zh``/``en`` it names wins, else the configured default.
"""

from __future__ import annotations

from typing import Any

LANGS = ("zh", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    # generic
    "internal": ("系统内部错误，已记录，请稍后重试", "Internal error; it has been logged, please retry later"),
    "validation": ("提交的内容有误", "The submitted data is invalid"),
    "not_found": ("{what}不存在：{id}", "{what} not found: {id}"),
    "conflict_state": (
        "当前状态为“{status}”，不能执行“{action}”",
        "Cannot {action} while the status is '{status}'",
    ),
    "conflict_race": (
        "该记录刚被他人处理，请刷新后重试",
        "Someone else changed this record just now; reload and try again",
    ),
    "forbidden_role": ("角色“{role}”无权执行“{action}”", "Role '{role}' may not {action}"),
    "bad_json": ("请求体不是有效的 UTF-8 JSON", "The request body is not valid UTF-8 JSON"),
    # trust (issue 6): logins, sessions, tokens
    "unauthenticated": ("请先登录", "Please log in first"),
    "token_invalid": ("令牌无效、已过期或已撤销", "The token is invalid, expired or revoked"),
    "login_failed": ("用户名或密码错误", "Wrong user name or password"),
    "csrf_failed": (
        "页面已过期，请刷新后重试（CSRF 校验失败）", "The page has expired; reload and try again (CSRF check failed)"),
    "password_short": ("密码至少 {min} 个字符", "The password needs at least {min} characters"),
    "password_weak": ("密码不能由同一个字符组成", "The password cannot be one repeated character"),
    "username_invalid": (
        "用户名须为 2 到 64 个字母、数字或 _.@- 字符",
        "The user name must be 2 to 64 letters, digits or _.@- characters",
    ),
    "username_taken": ("用户名“{username}”已被使用", "The user name '{username}' is taken"),
    "user_unit_required": ("角色“{role}”须指定所属单位", "Role '{role}' needs a unit"),
    # trust (issue 6): idempotent intake and the audit log
    "v.idempotency_key_format": (
        "Idempotency-Key 须为 1 到 {max} 个可见 ASCII 字符",
        "Idempotency-Key must be 1 to {max} visible ASCII characters",
    ),
    "v.idempotency_key_reused": (
        "此 Idempotency-Key 已用于内容不同的另一次提交，请换用新键",
        "This Idempotency-Key was already used for a different submission; use a new key",
    ),
    "audit.ok": (
        "审计日志完整：已校验 {checked} 条，最后一条 #{seq}",
        "Audit log intact: {checked} entries checked, last #{seq}",
    ),
    "audit.edited": ("审计日志第 {seq} 条被篡改（{detail}）", "Audit entry #{seq} was edited ({detail})"),
    "audit.deleted": ("审计日志第 {seq} 条被删除（{detail}）", "Audit entry #{seq} was deleted ({detail})"),
    "audit.inserted": ("审计日志第 {seq} 条是插入的（{detail}）", "Audit entry #{seq} was inserted ({detail})"),
    "audit.reordered": ("审计日志第 {seq} 条顺序被调换（{detail}）", "Audit entry #{seq} was reordered ({detail})"),
    "audit.broken_link": (
        "审计日志第 {seq} 条与前一条断链（{detail}）", "Audit entry #{seq} breaks the chain ({detail})",
    ),
    # trust (issue 6): body-size limit and rate limits
    "too_large": (
        "请求体过大：超过 {max_bytes} 字节的上限", "The request body is too large: the limit is {max_bytes} bytes"),
    "rate_limited": (
        "请求过于频繁，请 {seconds} 秒后再试", "Too many requests; try again in {seconds} seconds"),
    "method": ("此地址不支持 {method} 方法", "This address does not support the method {method}"),
    # field-level validation (pydantic error types)
    "v.missing": ("此项必填", "This field is required"),
    "v.string_too_long": ("不能超过 {max_length} 个字符", "At most {max_length} characters"),
    "v.string_too_short": ("至少 {min_length} 个字符", "At least {min_length} characters"),
    "v.too_long": ("最多 {max_length} 项", "At most {max_length} items"),
    "v.too_short": ("至少 {min_length} 项", "At least {min_length} items"),
    "v.greater_than_equal": ("不能小于 {ge}", "Must be at least {ge}"),
    "v.less_than_equal": ("不能大于 {le}", "Must be at most {le}"),
    "v.greater_than": ("必须大于 {gt}", "Must be greater than {gt}"),
    "v.less_than": ("必须小于 {lt}", "Must be less than {lt}"),
    "v.int_parsing": ("应为整数", "Must be an integer"),
    "v.int_type": ("应为整数", "Must be an integer"),
    "v.float_parsing": ("应为数字", "Must be a number"),
    "v.float_type": ("应为数字", "Must be a number"),
    "v.finite_number": ("应为有限数字", "Must be a finite number"),
    "v.string_type": ("应为文本", "Must be text"),
    "v.bool_parsing": ("应为是或否（true/false）", "Must be true or false"),
    "v.bool_type": ("应为是或否（true/false）", "Must be true or false"),
    "v.enum": ("取值无效，可选：{expected}", "Invalid value; expected one of: {expected}"),
    "v.literal_error": ("取值无效，可选：{expected}", "Invalid value; expected one of: {expected}"),
    "v.date_from_datetime_parsing": ("日期格式应为 YYYY-MM-DD", "Date must be YYYY-MM-DD"),
    "v.date_parsing": ("日期格式应为 YYYY-MM-DD", "Date must be YYYY-MM-DD"),
    "v.date_type": ("日期格式应为 YYYY-MM-DD", "Date must be YYYY-MM-DD"),
    "v.datetime_parsing": ("时间格式应为 ISO 8601", "Time must be ISO 8601"),
    "v.datetime_from_date_parsing": ("时间格式应为 ISO 8601", "Time must be ISO 8601"),
    "v.datetime_type": ("时间格式应为 ISO 8601", "Time must be ISO 8601"),
    "v.timezone_aware": ("时间必须带时区", "Time must carry a time zone"),
    "v.string_pattern_mismatch": ("格式不正确", "Wrong format"),
    "v.extra_forbidden": ("不认识的字段", "Unknown field"),
    "v.json_invalid": ("不是有效的 JSON", "Not valid JSON"),
    "v.model_attributes_type": ("应为对象", "Must be an object"),
    "v.dict_type": ("应为对象", "Must be an object"),
    "v.list_type": ("应为列表", "Must be a list"),
    "v.value_error": ("取值无效：{error}", "Invalid value: {error}"),
    "v.default": ("取值无效", "Invalid value"),
    # domain validation
    "v.unknown_unit": ("承办单位不存在：{id}", "Unknown handling unit: {id}"),
    "v.unknown_category": ("诉求分类不存在：{id}", "Unknown category: {id}"),
    "v.unknown_grid": ("网格不存在：{id}", "Unknown grid: {id}"),
    "v.latlon_pair": ("经度和纬度须同时提供", "Latitude and longitude go together"),
    "v.phone": ("电话号码格式不正确", "Not a valid phone number"),
    "v.id_number": ("身份证号须为 17 位数字加 1 位校验码", "An identity card number is 17 digits and a check mark"),
    "v.id_number_check": ("身份证号校验码不符，请核对", "The identity card number's check character does not match"),
    "v.blank": ("不能为空白", "Must not be blank"),
    "v.control_chars": ("含有不可见的控制字符", "Contains control characters"),
    "v.reason_required": ("须说明理由", "A reason is required"),
    "v.deadline_past": ("新的期限须晚于现在和原期限", "The new deadline must be later than now and the old one"),
    "v.assisting_is_lead": ("协办单位不能与主办单位相同", "An assisting unit cannot also be the lead"),
    "v.unit_kind_expected": ("单位 {id} 不是所需类型（{kind}）", "Unit {id} is not of the kind needed ({kind})"),
    "v.street_not_in_district": ("街道 {id} 不在区 {district} 内", "Street {id} does not lie in district {district}"),
    "v.lead_unit_required": ("指定单位主办时须填写主办单位", "A rule with a fixed lead needs lead_unit_id"),
    "v.lead_unit_with_territorial": (
        "属地主办（{target}）的规则不能另填主办单位", "A territorial rule (lead: {target}) takes no lead_unit_id"),
    "v.not_in_queue": ("诉求 {id} 不在待派单队列中", "Request {id} is not in the dispatch queue"),
    "v.category_or_unit_required": ("须选择分类或主办单位", "Choose a category or a lead unit"),
    "v.no_route": ("没有适用的分拨规则，请指定主办单位", "No routing rule applies: name the lead unit"),
    "v.finding_decided": (
        "该发现已处理（{status}），不能再次处理：{id}", "Finding {id} was already decided ({status})"),
    "triage.no_model": ("没有可用的分类模型", "no classifier model is installed"),
    "triage.low_confidence": ("分类把握不足", "the category is uncertain"),
    "triage.label_not_in_tree": (
        "预测的分类不在本地分类树中", "the predicted category is not in this deployment's tree"),
    "triage.no_rule": ("没有适用的分拨规则", "no routing rule applies"),
    "v.date_range": ("开始日期不能晚于结束日期", "The start date must not be after the end date"),
    "v.month": ("月份格式应为 YYYY-MM", "Month must be YYYY-MM"),
    "v.month_range": ("月份须在 {min} 到 {max} 之间", "The month must lie between {min} and {max}"),
    "v.year_range": ("年份须在 {min} 到 {max} 之间", "The year must be between {min} and {max}"),
    "v.day_outside_year": ("日期 {date} 不在 {year} 年内", "Date {date} is not in {year}"),
    "v.duplicate_day": ("日期 {date} 重复出现", "Date {date} appears twice"),
    "v.satisfaction_without_resolved": ("须同时给出是否解决和满意度", "Give both resolved and satisfaction"),
    "v.extension_not_pending": ("没有待审批的延期申请", "There is no pending extension request"),
    "fallback_no_return": ("兜底工单不能退单", "A fallback order cannot be returned"),
    "duplicate_of_self": ("不能标记为自身的重复件", "A request cannot duplicate itself"),
    "v.duplicate_of_required": ("重复件须指明原诉求编号", "Name the request this one duplicates"),
    "no_district": ("找不到可兜底的区级单位", "No district unit to fall back to"),
    "v.code_taken": ("编码已被使用：{code}", "Code already in use: {code}"),
    "v.not_lead_order": ("只有主办工单能执行此操作", "Only the lead work order can do this"),
    # gazetteer (地名库) and place extraction (找地点)
    "v.unknown_district": ("区级单位不存在：{id}", "Unknown district: {id}"),
    "v.place_taken": ("该区已有同名同类地名：{name}（{kind}）", "The district already has a {kind} named {name}"),
    "v.place_outside_district": (
        "{id} 不在所填的区（{district}）内", "{id} does not lie in the district given ({district})"),
    "place.why.address": ("地址写明“{text}”：{label}", "The address names “{text}”: {label}"),
    "place.why.text": ("正文提到“{text}”：{label}", "The text names “{text}”: {label}"),
    "place.why.namesakes": (
        "“{text}”有 {count} 处同名，按文中写明的{district}确定",
        "“{text}” has {count} namesakes; the {district} named in the text decides"),
    "place.why.ambiguous": (
        "“{text}”有 {count} 处同名（{districts}），文中未写明是哪个区，未作判断",
        "“{text}” names {count} places ({districts}) and the text names none of their districts: left undecided"),
    "place.why.other_district": ("另提到{names}，不在同一区，未采用", "Also names {names}, elsewhere: not used"),
    "place.why.unmatched": ("提到地名库中没有的{names}", "Mentions {names}, not in the gazetteer"),
    "place.why.none": ("未找到地名库中的地名", "No place of the gazetteer is named"),
    "place.why.point": ("坐标（{lat}, {lon}）落在网格“{grid}”内", "The point ({lat}, {lon}) lies in grid “{grid}”"),
    "place.why.no_grid": ("坐标（{lat}, {lon}）不在任何网格内", "The point ({lat}, {lon}) lies in no grid"),
    # display words of stored values (ledger, exports): <kind>.<stored value>
    "word.yes": ("是", "yes"),
    "word.no": ("否", "no"),
    "status.submitted": ("待受理", "submitted"),
    "status.accepted": ("已受理", "accepted"),
    "status.rejected": ("不予受理", "rejected"),
    "status.dispatched": ("已派单", "dispatched"),
    "status.in_progress": ("办理中", "in progress"),
    "status.replied": ("已办结", "replied"),
    "status.closed": ("已结案", "closed"),
    "satisfaction.satisfied": ("满意", "satisfied"),
    "satisfaction.basically_satisfied": ("基本满意", "basically satisfied"),
    "satisfaction.dissatisfied": ("不满意", "dissatisfied"),
    "channel.hotline": ("热线", "hotline"),
    "channel.app": ("App", "app"),
    "channel.web": ("网站", "web"),
    "channel.grid_worker": ("网格员", "grid worker"),
    "channel.social_media": ("社交媒体", "social media"),
    "channel.open311": ("Open311", "Open311"),
    "channel.proactive": ("主动治理", "proactive"),
    # work-order statuses, actions and roles, for the messages of a refused transition (409/403)
    "status.pending": ("待签收", "pending"),
    "status.acknowledged": ("已签收", "acknowledged"),
    "status.returned": ("已退单", "returned"),
    "status.extension_requested": ("延期申请中", "extension requested"),
    "status.reopened": ("已重办", "reopened"),
    "status.cancelled": ("已撤销", "cancelled"),
    "action.submit": ("提交", "submit"),
    "action.set_tier": ("设置时限", "set a deadline tier"),
    "action.create_unit": ("新增承办单位", "create a handling unit"),
    "action.accept": ("受理", "accept"),
    "action.reject": ("不予受理", "reject"),
    "action.dispatch": ("派单", "dispatch"),
    "action.acknowledge": ("签收", "acknowledge"),
    "action.return": ("退单", "return"),
    "action.fallback": ("兜底", "fall back"),
    "action.request_extension": ("申请延期", "request an extension"),
    "action.decide_extension": ("审批延期", "decide on an extension"),
    "action.reply": ("办结答复", "reply"),
    "action.callback": ("回访", "call back"),
    "action.reopen": ("重办", "reopen"),
    "action.close": ("结案", "close"),
    "action.cancel": ("撤销", "cancel"),
    "action.supervise": ("督办", "supervise"),
    "action.mark_overdue": ("标记超期", "mark overdue"),
    "action.enter_calendar": ("录入节假日", "enter the calendar"),
    "action.create_place": ("新增地名", "add a place name"),
    "action.update_place": ("修改地名", "edit a place name"),
    "action.delete_place": ("删除地名", "delete a place name"),
    "role.resident": ("居民", "resident"),
    "role.operator": ("话务员", "operator"),
    "role.dispatcher": ("派单员", "dispatcher"),
    "role.handler": ("承办人员", "handler"),
    "role.grid_worker": ("网格员", "grid worker"),
    "role.supervisor": ("督办人员", "supervisor"),
    "role.analyst": ("分析人员", "analyst"),
    "role.admin": ("管理员", "admin"),
    "role.system": ("系统", "system"),
    # Open311 GeoReport v2 (open311/): error descriptions, status notes, service notices
    "o311.format": ("不支持的格式：{format}，请用 .json 或 .xml", "Unsupported format {format}: use .json or .xml"),
    "o311.no_resource": ("没有这个 Open311 资源：{path}", "No such Open311 resource: {path}"),
    "o311.method": ("此资源不支持 {method} 方法", "This resource does not support {method}"),
    "o311.bad_request": ("请求无效", "The request is invalid"),
    "o311.no_service": ("服务（诉求分类）不存在：{code}", "Unknown service_code: {code}"),
    "o311.unknown_code": ("服务（诉求分类）不存在：{code}", "Unknown service_code: {code}"),
    "o311.no_request": ("诉求不存在：{id}", "No service request {id}"),
    "o311.no_token": ("令牌不存在：{token}", "Unknown token: {token}"),
    "o311.api_key_missing": ("缺少 api_key，不能提交诉求", "api_key is missing: cannot create a request"),
    "o311.api_key_invalid": ("api_key 无效或已停用，不能提交诉求", "Invalid api_key: cannot create a request"),
    "o311.content_type": (
        "请以 application/x-www-form-urlencoded 表单提交", "Post the request as application/x-www-form-urlencoded"),
    "o311.bad_form": ("表单无法解析", "The form cannot be read"),
    "o311.missing": ("此项必填", "Required"),
    "o311.repeated": ("只能填写一次", "Given more than once"),
    "o311.range": ("须在 {min} 到 {max} 之间", "Must lie between {min} and {max}"),
    "o311.latlong_pair": ("lat 和 long 须同时提供", "lat and long go together"),
    "o311.location": (
        "须提供位置：lat 和 long，或 address_string，或 address_id",
        "A location is required: lat and long, or address_string, or address_id"),
    "o311.address_id": ("地名编号不存在：{id}", "Unknown address_id: {id}"),
    "o311.email": ("电子邮箱格式不正确", "Not a valid e-mail address"),
    "o311.url": ("须为 http 或 https 网址", "Must be an http or https URL"),
    "o311.too_long": (
        "连同附加信息不能超过 {max_length} 个字符", "At most {max_length} characters with the attributes"),
    "o311.request_id": ("诉求编号无效：{id}", "Not a service request id: {id}"),
    "o311.too_many": ("最多 {max} 个", "At most {max}"),
    "o311.status": ("取值只能是 open 或 closed", "Must be open or closed"),
    "o311.datetime": (
        "时间格式应为带时区的 ISO 8601，如 2010-01-01T00:00:00Z",
        "Must be ISO 8601 with a zone, e.g. 2010-01-01T00:00:00Z"),
    "o311.date_order": ("start_date 不能晚于 end_date", "start_date must not be after end_date"),
    "o311.window": ("查询时间跨度不能超过 {days} 天", "The date range may not span more than {days} days"),
    "o311.attr_unknown": ("服务没有此属性：{code}", "The service has no attribute {code}"),
    "o311.attr_form": ("属性应写作 attribute[代码]", "Attributes are written attribute[code]"),
    "o311.attr_required": ("属性 {code} 必填", "Attribute {code} is required"),
    "o311.attr_one": ("属性 {code} 只能有一个值", "Attribute {code} takes one value"),
    "o311.attr_chars": (
        "属性 {code} 含有不允许的字符或换行", "Attribute {code} contains control characters or line breaks"),
    "o311.attr_long": ("属性 {code} 不能超过 {max_length} 个字符", "Attribute {code}: at most {max_length} characters"),
    "o311.attr_number": ("属性 {code} 应为数字", "Attribute {code} must be a number"),
    "o311.attr_range": ("属性 {code} 须在 {min} 到 {max} 之间", "Attribute {code} must lie between {min} and {max}"),
    "o311.attr_datetime": (
        "属性 {code} 应为带时区的 ISO 8601 时间", "Attribute {code} must be ISO 8601 with a zone"),
    "o311.attr_value": ("属性 {code} 没有选项 {value}", "Attribute {code} has no option {value}"),
    "o311.rejected.duplicate": ("重复件，随诉求 {id} 一并答复", "Duplicate of request {id}; answered with it"),
    "o311.rejected.out_of_scope": ("不属于受理范围", "Out of scope"),
    "o311.rejected.no_content": ("无实质内容", "No content"),
    "o311.notice.dispatched": ("已派至{unit}办理，期限 {due}", "Sent to {unit}; due {due}"),
    "o311.notice.queued": ("已收到，正在分派承办单位", "Received; a dispatcher is choosing the handling unit"),
    "o311.notice.duplicate": (
        "与诉求 {id} 反映同一问题，将随其一并答复", "Same matter as request {id}; it will be answered with it"),
}

LABELS: dict[str, tuple[str, str]] = {
    "ServiceRequest": ("诉求", "Service request"),
    "WorkOrder": ("工单", "Work order"),
    "Supervision": ("督办件", "Supervision case"),
    "OrgUnit": ("承办单位", "Handling unit"),
    "Category": ("诉求分类", "Category"),
    "Grid": ("网格", "Grid"),
    "Place": ("地名", "Place"),
    "User": ("用户", "User"),
    "AuthToken": ("令牌", "Token"),
}


def pick_language(accept_language: str | None, default: str = "zh") -> str:
    """Return ``"zh"`` or ``"en"`` from an ``Accept-Language`` header value.

    Entries are taken in order of their ``q`` weight; the first one whose primary tag is ``zh`` or
    ``en`` wins. Malformed entries are skipped; with no match, ``default``.
    """
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        weight = 1.0
        for param in pieces[1:]:
            name, _, val = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(val)
                except ValueError:
                    weight = 0.0
        primary = tag.split("-")[0]
        if primary in LANGS and weight > 0:
            ranked.append((-weight, position, primary))
    return sorted(ranked)[0][2] if ranked else default


def translate(code: str, lang: str, /, **params: Any) -> str:
    """Return the message ``code`` in ``lang`` with ``params`` filled in.

    An unknown code falls back to the generic validation message; a missing placeholder leaves
    the template as it is rather than raising.
    """
    zh, en = MESSAGES.get(code, MESSAGES["v.default"])
    template = en if lang == "en" else zh
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template


def word(kind: str, value: object, lang: str) -> str:
    """Return the display word of a stored value (``word("status", "closed", "zh")`` → 已结案), or
    the value itself when the catalogue has no word for it."""
    key = f"{kind}.{value}"
    return translate(key, lang) if key in MESSAGES else str(value)


def label(name: str, lang: str) -> str:
    """Return the user-facing name of an entity (``"WorkOrder"`` → 工单 / Work order)."""
    zh, en = LABELS.get(name, (name, name))
    return en if lang == "en" else zh
