"""Gold text and error measures shared by the benchmarks."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path


def work_area(name: str, *roots: Path) -> Path:
    """A temporary folder for one run: the allowed root (with `roots`) and the home of the cache."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ["TOOLSUITE_ROOTS"] = os.pathsep.join(str(root) for root in (*roots, work))
    os.environ["TOOLSUITE_CACHE_DIR"] = str(work / "cache")
    return work

# Every cell of table_fields.png, read off the image, in reading order.
TABLE_GOLD = (
    "论文名称 领域（场景） query数量 任务 输入 类型 评价指标 数据集example 其他 "
    "drbench 办公（企业） 15个 没有特定划分 query文本+文档（办公环境） report生成 "
    "文本query：How can Lee's Market leverage FSMA 204 regulations to enhance food safety and customer trust? "
    "附加文件：pdf、ppt等文档 114个insight 设定了企业和使用者的persona"
)


def normalise(text: str) -> str:
    table = str.maketrans({"（": "(", "）": ")", "：": ":", "，": ",", "。": ".", "、": ",", "’": "'", "‘": "'"})
    return "".join(text.translate(table).split())


def order_free_cer(found: str, gold: str) -> float:
    """Character error rate that ignores reading order: the edits needed between the two multisets of
    characters (a substitution counts once). It is the lower bound of Levenshtein over all orderings,
    fair for tables, where engines order cells differently."""
    got, want = Counter(normalise(found)), Counter(normalise(gold))
    missing = sum((want - got).values())
    extra = sum((got - want).values())
    return max(missing, extra) / max(sum(want.values()), 1)


# tool-rag known-item questions, written by hand for bench/rag_quality.py
# (question, a distinctive part of the gold document's title)
QUESTIONS_ZH = [
    ("Redis 这种非关系型数据库应该怎样配置和调优", "NoSQL之Redis配置与优化"),
    ("做检索增强生成应用时可以选用哪些文本向量模型", "11款Embedding模型"),
    ("刚读研的学生该掌握哪些查文献的网站", "10大学术搜索网站"),
    ("国际电信联盟通过的大模型基准测评国际标准", "全球大模型基准测试标准"),
    ("昇腾芯片上怎样把大模型推理跑得更快", "破局大模型推理困局"),
    ("ChatGPT 的深度研究功能可以连接微软网盘了", "深度研究连接器"),
    ("谷歌的人工智能在国际奥数竞赛中拿到银牌", "AI陶哲轩"),
    ("在 LM Studio 里让模型参考本地文件回答", "与文档聊天"),
    ("复旦大学团队写的关于大模型智能体的长篇综述", "80页大模型Agent综述"),
    ("谷歌开源了一个从杂乱文本里抽取结构化信息的库", "LangExtract"),
    ("腾讯和港城大的视频推理测试让所有模型都不及格", "福尔摩斯测试"),
    ("阿里巴巴开源的深度研究智能体模型排名第一", "王炸Agent"),
    ("在持续集成流水线里让 Gemini 自动审查代码", "代码审核自动化"),
    ("vLLM 和 SGLang 这两个推理框架的开源社区是怎么发展起来的", "77,000 Star"),
    ("食品饮料企业推进人工智能转型的白皮书要点", "食品饮料企业AI转型白皮书"),
    ("测评各家大语言模型控制幻觉的能力", "幻觉控制能力深度测评报告"),
    ("直播带货消费投诉的年度舆情报告点名了哪些主播", "直播带货消费维权舆情年度报告"),
    ("网红卖的红薯粉条里查不出红薯被重罚", "东北雨姐"),
    ("孩子看直播给主播打赏了将近两百万元", "未成年人观看直播打赏近200万"),
    ("花椒直播因为虚假的故宫直播被文化部处罚", "文化部关停10家直播平台"),
    ("音乐著作权协会起诉斗鱼，主播直播时放歌侵权", "音著协诉斗鱼"),
    ("韩寒起诉百度文库，网络平台不能拿避风港当挡箭牌", "避风港原则不是免责挡箭牌"),
    ("用规模定律估算训练一个模型需要多少算力和数据", "Scaling Law深度解析"),
    ("Transformer 里的前馈层参数是不是所有词元共用", "ffn对于所有token参数共享"),
    ("北京大学和腾讯让奖励模型理解人类偏好、泛化接近 GPT-4.1", "北大腾讯突破奖励模型瓶颈"),
    ("旷视推出能看懂多栏密集排版和中英混排文档的多模态模型", "AI读论文新神器"),
    ("遥感影像语义分割的基准数据集和小目标分割方法", "遥感图像语义分割Benchmark"),
    ("苏黎世联邦理工提出的思维图提示，推理更好成本更低", "思维图GoT"),
    ("Anthropic 发现多轮长对话可以让模型越狱", "256轮对话"),
    ("福建中部老房子夏天靠什么自然通风", "闽中地区传统民居夏季自然通风"),
]
QUESTIONS_EN = [
    ("Which websites should new graduate students use to search the academic literature?", "10大学术搜索网站"),
    ("An international standard from the ITU for benchmarking large models", "全球大模型基准测试标准"),
    ("A Google AI won a silver medal at the International Mathematical Olympiad", "AI陶哲轩"),
    ("Open-source library from Google that extracts structured information from free text",
     "LangExtract"),
    ("A video reasoning benchmark that every large model fails", "福尔摩斯测试"),
    ("Automating code review with Gemini in a CI/CD pipeline", "代码审核自动化"),
    ("How the vLLM and SGLang inference engine communities grew", "77,000 Star"),
    ("An influencer's sweet potato noodles contained no sweet potato and drew a huge fine",
     "东北雨姐"),
    ("A child spent almost two million yuan tipping live streamers", "未成年人观看直播打赏近200万"),
    ("The music copyright society sued Douyu because a streamer played a song", "音著协诉斗鱼"),
    ("Scaling laws: estimating the compute and data needed to train a model", "Scaling Law深度解析"),
    ("Are the feed-forward layer weights in a Transformer shared by all tokens?",
     "ffn对于所有token参数共享"),
    ("Graph of Thoughts prompting improves reasoning quality at lower cost", "思维图GoT"),
    ("Anthropic found that hundreds of dialogue turns can jailbreak a model", "256轮对话"),
    ("Natural ventilation of traditional houses in central Fujian in summer", "闽中地区传统民居夏季自然通风"),
    ("Peking University and Tencent make reward models generalise like GPT-4.1", "北大腾讯突破奖励模型瓶颈"),
    ("A survey of LLM-based agents by the Fudan NLP group", "80页大模型Agent综述"),
    ("Using local documents as context in LM Studio chats", "与文档聊天"),
    ("Speeding up large model inference on Huawei Ascend hardware", "破局大模型推理困局"),
    ("ChatGPT deep research can now read files from Microsoft OneDrive", "深度研究连接器"),
]
