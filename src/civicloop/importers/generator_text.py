"""Words of the generator: topics with their seasons, and citizens' requests and units' replies in
Chinese, written for civicloop from its own templates and vocabulary (no data set is copied).

A *topic* is a kind of matter a resident calls about (heating, an elevator, noise, …). It matches
leaf categories of whatever catalogue is in the database by keywords, carries a weight for each
calendar month (heating in November–March, air conditioners and noise in June–August, school places
in spring, unpaid wages before the Spring Festival), the kind of place it happens at, and the
sentences a request and a reply are built from. Leaves no topic matches share the generic topic,
whose sentences name the leaf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLAT = (1.0,) * 12


@dataclass(frozen=True)
class Topic:
    """One kind of matter. ``season`` holds 12 monthly weights (January first); ``place`` is
    ``home`` (a building and entrance), ``street`` (a road), ``spot`` (a place in the community) or
    ``none`` (no place: wages, insurance, schools); ``problems`` are (title, sentence) pairs."""

    key: str
    keywords: tuple[str, ...]
    base: float
    season: tuple[float, ...]
    place: str
    problems: tuple[tuple[str, str], ...]
    details: tuple[str, ...]
    replies: tuple[str, ...]
    whens: tuple[str, ...] = ()


TOPICS: tuple[Topic, ...] = (
    Topic("heating", ("暖气", "供暖", "供热"), 3.0, (4, 3, 1.5, .05, .05, .05, .05, .05, .05, .05, 3, 4), "home",
          (("暖气不热", "家里暖气一直不热，屋里只有十三四度"), ("暖气上热下凉", "暖气片上热下凉，晚上冻得睡不着"),
           ("暖气漏水", "暖气管道漏水，地板都泡了"), ("整栋楼暖气不热", "整栋楼的暖气都是温的，室温不到十六度"),
           ("交费后暖气不热", "交了供暖费暖气却一点不热"), ("暖气时冷时热", "暖气时热时不热，早晚特别冷")),
          ("家里有八十多岁的老人和刚满月的孩子。", "屋里穿着羽绒服还觉得冷。", "楼上楼下邻居都是一样的情况。",
           "已经给热力公司打过三次电话。", "老人冻感冒了，正在输液。"),
          ("经热力公司入户检查，系楼内管道存在气堵，已排气处理，室温已恢复到十八度以上。",
           "已对该楼供暖阀门进行调节并清洗过滤器，经回访测温达到标准。",
           "维修人员已更换漏水暖气片阀门，并协助清理积水。"),
          ("入冬以来", "供暖开始以后", "这几天降温以后")),
    Topic("noise", ("噪声", "噪音"), 2.0, (.8, .8, .9, 1, 1.2, 1.8, 2.2, 2.1, 1.3, 1, .9, .8), "street",
          (("夜间施工噪声扰民", "工地每天夜里十一点以后还在施工，机器声音特别大"),
           ("空调外机噪声扰民", "楼下饭馆的空调外机嗡嗡响，整夜吵得睡不着"),
           ("商户喇叭噪声大", "临街商户用大喇叭循环播放促销广告"),
           ("广场舞音响扰民", "广场上跳舞的音响开得太大，一直到晚上十点"),
           ("渣土车夜间鸣笛", "夜里渣土车进出工地，鸣笛声不断"), ("烧烤店深夜喧哗", "楼下烧烤店半夜还有人喝酒喧哗")),
          ("孩子马上要中考，根本没法复习。", "家里老人心脏不好，晚上睡不踏实。", "窗户关上也挡不住声音。",
           "白天上班，晚上休息不好，身体吃不消。"),
          ("执法人员已到现场核查，责令施工单位夜间停止高噪声作业，并将持续巡查。",
           "已约谈商户负责人，对空调外机加装隔音罩并调整位置。", "已协调广场活动队伍降低音量并控制活动时间。"),
          ("每天晚上十点以后", "凌晨一两点", "这一个多月")),
    Topic("elevator", ("电梯",), 1.4, FLAT, "home",
          (("电梯频繁故障", "楼里电梯三天两头出故障停运"), ("电梯异响晃动", "电梯运行时晃得厉害还有异响"),
           ("电梯困人", "电梯门关不严，上周还困过人"), ("电梯维修不及时", "电梯坏了一个多星期没人修"),
           ("电梯按钮失灵", "电梯按钮失灵，经常停错楼层")),
          ("我们住十八楼，老人只能爬楼梯。", "楼里好几户有行动不便的老人。", "孩子上学都得走楼梯。",
           "物业说维修资金还没批下来。"),
          ("维保单位已更换电梯门机控制板，并经特种设备检验合格后恢复运行。",
           "已督促物业启动维修资金使用程序，电梯维修已完成。", "已对电梯进行全面检修，并要求物业加强日常巡检。")),
    Topic("property", ("物业",), 1.2, FLAT, "home",
          (("楼道灯坏了没人修", "楼道里的灯坏了很久物业也不修"), ("物业乱收费", "物业突然要求多交一笔公共维修费"),
           ("楼道杂物无人清理", "楼道堆满杂物，物业一直不清理"), ("报修无人处理", "屋顶漏雨找物业报修，一个月没人来"),
           ("小区门禁损坏", "小区门禁坏了，陌生人随便进出")),
          ("业主们意见很大。", "问物业就说在走流程。", "交了物业费却享受不到服务。"),
          ("街道已约谈物业公司，楼道照明和门禁已修复。", "经核实，该项收费未经业主大会同意，已责令物业停止收取。",
           "物业已清理楼道杂物并安排专人定期保洁。")),
    Topic("road", ("道路", "路面", "市政", "井盖"), 1.2, (.9, .9, 1, 1, 1, 1.1, 1.4, 1.4, 1, 1, .9, .9), "street",
          (("路面坑洼", "路面有好几个大坑，下雨天积满了水"), ("人行道方砖松动", "人行道方砖松动翘起，老人容易绊倒"),
           ("井盖缺失", "路口的井盖不见了，只围了个纸箱"), ("施工后路面未恢复", "道路施工后一直没有恢复，坑坑洼洼")),
          ("晚上骑车经过很危险。", "已经有人在这里摔倒了。", "附近就是小学，孩子每天经过。"),
          ("养护单位已对破损路面进行修补。", "缺失井盖已补装，并对周边井盖进行排查。", "已督促施工单位恢复路面。")),
    Topic("streetlight", ("路灯", "照明"), 0.9, (1.2, 1.1, 1, .9, .8, .8, .8, .8, .9, 1.1, 1.2, 1.3), "street",
          (("路灯不亮", "一整排路灯晚上都不亮"), ("路灯损坏", "路灯忽明忽暗，有的灯罩已经掉了"),
           ("巷内路灯不亮", "巷子里唯一一盏路灯坏了")),
          ("晚上下班回家黑乎乎的，很不安全。", "老人晚上出门遛弯不敢走这条路。"),
          ("已更换损坏的灯具和线路，路灯恢复正常照明。", "经排查系电缆故障，已抢修完毕。")),
    Topic("garbage", ("垃圾", "环卫", "清运"), 1.3, (.9, 1.1, .9, .9, 1, 1.2, 1.4, 1.4, 1, 1, .9, .9), "spot",
          (("垃圾清运不及时", "垃圾桶满了好几天都没人清运"), ("装修垃圾乱倒", "有人在绿地里倒了一大堆装修垃圾"),
           ("垃圾站污水横流", "垃圾站周围污水横流，气味难闻"), ("分类垃圾桶损坏", "垃圾分类桶坏了一直没换")),
          ("天热以后招了很多苍蝇蚊子。", "走过去都得捂着鼻子。", "小孩在旁边玩很不卫生。"),
          ("环卫部门已完成清运，并增加了该点位清运频次。", "已清理装修垃圾，并在显著位置张贴告示。")),
    Topic("parking", ("停车", "占道", "违停"), 1.3, FLAT, "street",
          (("占用消防通道", "消防通道上天天停满私家车"), ("车辆乱停乱放", "路边停满车，公交车都过不去"),
           ("共享单车堆积", "共享单车把人行道堵得严严实实"), ("僵尸车长期占位", "一辆落满灰的车停了大半年没动过")),
          ("万一着火消防车根本进不来。", "早晚高峰经常堵成一团。", "推着婴儿车都走不过去。"),
          ("交管部门已对违停车辆进行处罚，并施划禁停标线。", "已协调运营企业清运堆积单车。",
           "已联系车主挪走长期停放车辆。")),
    Topic("water", ("停水", "供水", "自来水", "水压"), 1.0, (.9, .9, .9, .9, 1, 1.2, 1.4, 1.4, 1, .9, .9, 1), "home",
          (("停水未通知", "家里突然停水了，事先没有任何通知"), ("水压低", "高层水压很低，热水器都打不着"),
           ("自来水发黄", "水龙头流出来的水发黄有异味"), ("长时间停水", "整栋楼停水快一天了还没来")),
          ("饭都做不了，孩子没法洗漱。", "家里老人生病需要用水。", "问物业也说不清什么时候来水。"),
          ("经查系供水管线抢修，现已恢复供水，今后停水将提前公告。", "已对二次供水设备进行检修，水压恢复正常。",
           "已对水箱进行清洗消毒，水质检测合格。")),
    Topic("power", ("停电", "供电", "电力"), 0.9, (.9, .9, .8, .8, .9, 1.3, 1.8, 1.7, 1, .8, .8, .9), "home",
          (("夜间突然停电", "小区晚上突然停电，几个小时还没来电"), ("频繁跳闸", "这几天天天跳闸，空调一开就停电"),
           ("电压不稳", "电压不稳，灯一直闪")),
          ("冰箱里的东西都坏了。", "家里有老人离不开空调。", "孩子在家上网课没法上。"),
          ("经抢修更换了故障变压器，供电已恢复。", "已对小区线路进行增容改造。")),
    Topic("gas", ("燃气", "煤气", "天然气"), 0.6, (1.4, 1.3, 1, .8, .7, .6, .6, .6, .7, .9, 1.2, 1.4), "home",
          (("楼道燃气异味", "楼道里有很重的燃气味"), ("燃气表故障", "燃气表显示异常，交了费也不通气"),
           ("突然停气", "突然停气了，没有任何通知")),
          ("担心出安全事故。", "家里没法做饭。"),
          ("燃气公司已到场检测，更换了漏气的接头。", "已更换故障燃气表，恢复供气。")),
    Topic("fumes", ("油烟", "餐饮", "异味"), 0.7, (.8, .8, .9, 1, 1.1, 1.3, 1.4, 1.3, 1.1, 1, .9, .8), "spot",
          (("饭店排烟扰民", "楼下饭店的排烟管道正对着我家窗户"), ("露天烧烤油烟", "路边露天烧烤烟熏火燎"),
           ("油烟直排", "饭馆油烟没有净化直接排放")),
          ("窗户都不敢开。", "衣服晾在外面全是油烟味。"),
          ("已责令餐饮单位安装油烟净化设施并定期清洗。", "城管已取缔露天烧烤摊位。")),
    Topic("bus", ("公交", "公共交通", "地铁"), 0.5, FLAT, "street",
          (("公交车间隔太长", "公交车等半个多小时才来一趟"), ("公交站牌被撤", "公交站牌被挪走了，也没有新的站牌"),
           ("希望增开公交线路", "小区附近没有公交线路，出行很不方便")),
          ("上班经常迟到。", "老人出门看病很不方便。"),
          ("公交公司已调整该线路高峰时段发车间隔。", "已将居民诉求纳入线网优化方案统筹研究。")),
    Topic("school", ("入学", "学校", "教育", "幼儿园"), 0.6, (.6, .8, 1.3, 1.8, 2, 1.8, 1.4, 1, .8, .6, .5, .5), "none",
          (("入学政策咨询", "咨询孩子今年上小学的划片政策"), ("学区划片问题", "孩子户籍在这里却被划到很远的学校"),
           ("幼儿园入园难", "附近公办幼儿园学位太少报不上名")),
          ("家长们都很着急。", "网上查不到明确的说法。"),
          ("教委已电话联系家长，详细解答了入学政策。", "已将情况反馈学区统筹安排学位。")),
    Topic("wages", ("工资", "欠薪", "劳动", "薪酬"), 0.8, (2.2, 1.6, .8, .7, .7, .7, .7, .7, .8, .9, 1.2, 2), "none",
          (("工地拖欠工资", "工地老板拖欠我们几个工人三个月工资"),
           ("公司拖欠工资", "公司已经两个月没发工资了，一直推脱"), ("不发加班费", "单位长期加班却不发加班费")),
          ("一家老小等着这笔钱生活。", "找了老板好几次都找不到人。"),
          ("劳动监察部门已介入，协调企业支付拖欠工资。", "已告知劳动仲裁申请渠道并提供法律援助。")),
    Topic("insurance", ("社保", "社会保险", "养老", "医保"), 0.6, FLAT, "none",
          (("单位未缴社保", "单位一直没有给我缴纳社保"), ("养老金咨询", "咨询退休后养老金怎么计算"),
           ("医保报销慢", "异地就医的医保报销迟迟办不下来")),
          ("打了好几次电话都没说清楚。", "担心影响以后的待遇。"),
          ("社保经办机构已核实并督促单位补缴。", "已电话详细解答相关政策。")),
    Topic("medical", ("医疗", "医院", "就医"), 0.5, (1.3, 1.2, 1, .9, .9, .9, .9, .9, .9, 1, 1.1, 1.3), "none",
          (("取药排队时间长", "社区医院开药要排两个小时的队"), ("窗口服务态度差", "医院窗口工作人员态度很差"),
           ("专家号难挂", "专家号根本挂不上")),
          ("老人身体吃不消。", "希望改进服务。"),
          ("卫健部门已约谈医院，优化了取药流程。", "已对相关工作人员批评教育。")),
    Topic("consumer", ("消费", "市场", "商户", "价格", "食品"), 0.7, FLAT, "spot",
          (("预付卡退费难", "在健身房办的卡，店突然关门了"), ("缺斤短两", "菜市场有摊位缺斤短两"),
           ("售卖过期食品", "超市卖的食品过了保质期")),
          ("商家一直不给退钱。", "希望监管部门查一查。"),
          ("市场监管部门已调解，商家同意退款。", "已对涉事摊位立案调查。")),
    Topic("safety", ("安全", "隐患", "消防", "事故"), 0.5, (1.2, 1.2, 1, 1, 1, 1, 1, 1, 1, 1, 1.1, 1.2), "spot",
          (("电动车楼内充电", "有人把电动车推进楼道里充电"), ("楼道堆物", "楼道里堆满了纸箱和旧家具"),
           ("电线老化裸露", "空置房屋的电线老化裸露")),
          ("一旦着火后果不堪设想。", "担心出事故。"),
          ("已清理楼道堆物，并开展消防安全宣传。", "已督促整改，拆除私拉电线。")),
)

GENERIC = Topic("generic", (), 0.0, FLAT, "spot",
                (("问题", "反映{leaf}方面的问题"), ("咨询", "咨询{leaf}相关事宜"), ("意见", "对{leaf}有意见")),
                ("希望得到答复。", "问了几个部门都说不归他们管。"),
                ("经核实，已安排工作人员处理，并向来电人做了解释说明。", "已按照相关规定答复来电人。"))

WHENS = ("最近一周", "这几天", "近半个月来", "从上周开始", "今天上午", "昨天夜里", "连续好几天", "这段时间")
MOODS = ("已经反映过好几次了，一直没有解决。", "心里非常着急。", "希望这次能真正解决。", "邻居们意见都很大。",
         "不知道该找哪个部门，只好打热线。", "", "", "")
ASKS = ("请有关部门尽快处理。", "希望相关部门核实后给个答复。", "麻烦尽快派人来看看。", "请督促责任单位解决。",
        "希望早日恢复正常。", "谢谢。")
SPOTS = ("小区南门", "菜市场", "地铁站出口", "公交站台", "社区卫生服务站", "幼儿园门口", "小公园", "健身广场",
         "地下车库", "底商")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾"
GIVEN = "秀兰建华国强丽娟志明桂英海燕文静春梅建军玉兰晓东红霞金凤伟明淑珍振宇雅琴"
PHONE_PREFIXES = ("139", "138", "137", "136", "135", "158", "188", "186", "131", "155")
NO_CONTENT = ("来电无声，多次询问无应答后挂断。", "来电人未说明具体诉求即挂断。", "来电人表示打错电话。")
OUT_OF_SCOPE = ("咨询外省户口迁移政策，不属于本市受理范围。", "反映个人之间的借贷纠纷，已告知通过法律途径解决。",
                "咨询股票投资问题，不属于受理范围。")
RETURN_REASONS = ("该事项不属于本单位职责范围，建议转交属地街道。", "经核实问题地点不在本辖区。",
                  "该事项由行业主管部门负责。")
EXTENSION_REASON = "需协调多个部门共同处理，申请延期。"
ASSIST_REPLY = "已配合主办单位到现场核实处理。"

BUILDING_MAX = 28  # ordinary requests name buildings 1..28; planted hotspots use 41 and up


def topic_of(path: str) -> int:
    """Return the index in ``TOPICS`` of the first topic whose keyword occurs in the leaf's name,
    else in its whole path; ``-1`` (generic) when none does."""
    leaf = path.rsplit("/", 1)[-1]
    for text in (leaf, path):
        for index, topic in enumerate(TOPICS):
            if any(word in text for word in topic.keywords):
                return index
    return -1


def _pool(parts: list[tuple[str, ...]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    flat: list[str] = []
    offsets, counts = [], []
    for strings in parts:
        offsets.append(len(flat))
        counts.append(len(strings))
        flat.extend(strings)
    return flat, np.array(offsets), np.array(counts)


ALL = (*TOPICS, GENERIC)  # index -1 (generic) is the last
_TITLES = _pool([tuple(title for title, _ in t.problems) for t in ALL])
_PROBLEMS = _pool([tuple(sentence for _, sentence in t.problems) for t in ALL])
_DETAILS = _pool([t.details for t in ALL])
_REPLIES = _pool([t.replies for t in ALL])
_WHENS = _pool([t.whens + WHENS for t in ALL])
PLACE_KIND = np.array([("home", "street", "spot", "none").index(t.place) for t in ALL])


def pick(rng: np.random.Generator, pool: tuple[list[str], np.ndarray, np.ndarray], topic: np.ndarray) -> np.ndarray:
    """Draw one string index of ``pool`` for each row's topic (vectorised)."""
    _, offsets, counts = pool
    return offsets[topic] + (rng.random(len(topic)) * counts[topic]).astype(np.int64)


def request_texts(
    rng: np.random.Generator, *, topic: np.ndarray, leaf_name: list[str], comm: list[str], district: list[str],
    street: list[str], road: list[str], road2: list[str], building: np.ndarray, entrance: np.ndarray,
    number: np.ndarray, spot: np.ndarray,
) -> tuple[list[str], list[str], list[str]]:
    """Write each row's title, description and address.

    Takes per-row arrays and lists of equal length: ``topic`` (index into ``TOPICS``, -1 generic),
    the leaf category's name, the names of the community, district and street, two road names,
    building and entrance numbers, a street number and a spot index (into ``SPOTS``). Returns
    (titles, descriptions, addresses). Rows with the same community, building and entrance of a
    ``home`` topic get the same address, which is how a planted hotspot is found again.
    """
    n = len(topic)
    t = np.where(topic < 0, len(ALL) - 1, topic)
    kind = np.where(building > BUILDING_MAX, 0, PLACE_KIND[t]).tolist()  # planted hotspots are at a building
    prob_i, det_i = pick(rng, _PROBLEMS, t).tolist(), pick(rng, _DETAILS, t)
    when_i = pick(rng, _WHENS, t).tolist()
    mood_i = rng.integers(len(MOODS), size=n).tolist()
    ask_i = rng.integers(len(ASKS), size=n).tolist()
    det_i = np.where(rng.random(n) < 0.75, det_i, -1).tolist()
    titles_s, problems_s, details_s, whens_s = _TITLES[0], _PROBLEMS[0], _DETAILS[0], _WHENS[0]
    b, e, num, sp = building.tolist(), entrance.tolist(), number.tolist(), spot.tolist()
    titles: list[str] = []
    bodies: list[str] = []
    addresses: list[str] = []
    for i in range(n):
        k = kind[i]
        if k == 0:
            place = f"{comm[i]}{b[i]}号楼{e[i]}单元"
            where, short = f"我家住在{place}，", f"{comm[i]}{b[i]}号楼"
        elif k == 1:
            place = f"{road[i]}{num[i]}号附近" if num[i] % 3 else f"{road[i]}与{road2[i]}交叉口"
            where, short = f"{place}，", road[i]
        elif k == 2:
            place = f"{comm[i]}{SPOTS[sp[i]]}"
            where, short = f"{place}，", place
        else:
            place, where, short = comm[i], "", ""
        problem = problems_s[prob_i[i]]
        tail = titles_s[prob_i[i]]
        if t[i] == len(ALL) - 1:
            problem = problem.format(leaf=leaf_name[i])
            tail = leaf_name[i] + tail
        detail = details_s[det_i[i]] if det_i[i] >= 0 else ""
        titles.append(short + tail)
        bodies.append(f"{whens_s[when_i[i]]}，{where}{problem}。{detail}{MOODS[mood_i[i]]}{ASKS[ask_i[i]]}")
        addresses.append(f"{district[i]}{street[i]}{place}")
    return titles, bodies, addresses


def reply_texts(rng: np.random.Generator, topic: np.ndarray) -> list[str]:
    """Return one reply (办结答复) per row, chosen among the topic's replies."""
    t = np.where(topic < 0, len(ALL) - 1, topic)
    strings = _REPLIES[0]
    return [strings[i] for i in pick(rng, _REPLIES, t).tolist()]


def citizens(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """Return ``n`` made-up names (surname + 先生/女士, or a two-character given name) and fake mobile
    numbers (a common prefix and eight digits drawn from ``rng``)."""
    sur = rng.integers(len(SURNAMES), size=n).tolist()
    style = rng.integers(4, size=n).tolist()
    given = rng.integers(len(GIVEN) // 2, size=n).tolist()
    prefix = rng.integers(len(PHONE_PREFIXES), size=n).tolist()
    digits = rng.integers(0, 100_000_000, size=n).tolist()
    names = [SURNAMES[s] + ("先生" if st == 0 else "女士" if st == 1 else GIVEN[2 * g:2 * g + 2])
             for s, st, g in zip(sur, style, given, strict=True)]
    phones = [f"{PHONE_PREFIXES[p]}{d:08d}" for p, d in zip(prefix, digits, strict=True)]
    return names, phones
