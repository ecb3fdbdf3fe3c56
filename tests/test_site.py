"""What a learner sees on the static site, checked on the site that ``conftest.built_book`` builds once.

Every page of the table of contents (and the search page) is opened in headless Chromium once
(:func:`visit`): the DOM it renders and every request it makes to another host, read from Chromium's
network log, so that what the scripts fetch counts as well as what the HTML names. The tests then
check that no page loads anything from elsewhere, that the search works offline, that the training
bars and the widget's still image are on the page, that every figure has alt text, that the pages
pass axe-core's checks of contrast and headings, and that every chapter's header offers every way to
run it.

At a laptop's width (:data:`LAPTOP_WIDTH`), every page is also measured once (:func:`layout`): nothing
may run past the content column unless a scrolling box holds it, tables scroll instead of being cut off
(book/_static/tables.css), every figure is shown large enough for its smallest text to read (the font
sizes, width and DPI of ``course_lib.plotting.style``), and no page shows a path of the machine that
built it or a default repr (``<... object at 0x...>``). Each check has a control test that feeds it a
bad synthetic page. Like the screenshot tests, they fail where Chromium is missing
(``conftest.chromium``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

import matplotlib
import nbformat
import pytest
import yaml
from conftest import CHAPTERS, ROOT, headless_chromium

from course_lib.book import STILL_NOTE, book_repository_url
from course_lib.plotting.style import ANNOTATION_SIZE, DPI, FONT_SIZES, MAX_WIDTH, new_figure

pytestmark = pytest.mark.notebook


def toc_pages() -> list[str]:
    """Every page of ``_toc.yml`` (``book/index``, ``book/01_...``, ...) and the search page."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            pages += [chapter["file"], *(section["file"] for section in chapter.get("sections", []))]
    return [*pages, "search"]


PAGES = toc_pages()

LOADS = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
}
"""The elements and attributes by which HTML makes a browser load something (an ``<a>`` only links)."""


class PageParser(HTMLParser):
    """Collects what a page loads (``loads``) and its images: src, alt text, and whether a caption of
    their ``<figure>`` describes them."""

    def __init__(self):
        super().__init__()
        self.loads: list[str] = []
        self.images: list[list] = []
        self.figures: list[list[int]] = []  # the images of each open <figure>

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "link" and attributes.get("rel") in {"canonical", "alternate"}:
            attributes = {}
        for name in LOADS.get(tag, ()):
            if attributes.get(name):
                self.loads += [part.split()[0] for part in attributes[name].split(",") if part.strip()]
        if tag == "figure":
            self.figures.append([])
        elif tag == "figcaption" and self.figures:
            for index in self.figures[-1]:
                self.images[index][2] = True
        elif tag == "img":
            self.images.append([attributes.get("src", ""), (attributes.get("alt") or "").strip(), False])
            if self.figures:
                self.figures[-1].append(len(self.images) - 1)

    def handle_endtag(self, tag):
        if tag == "figure" and self.figures:
            self.figures.pop()


def parsed(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text())
    return parser


def is_external(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


class Visit(NamedTuple):
    dom: str
    """The page's DOM after its scripts ran."""
    requests: list[str]
    """Every URL of another host that the page asked for (from Chromium's network log)."""


def page_requests(net_log: Path) -> list[str]:
    """URLs of the requests that a page made (not Chromium's own), from a ``--log-net-log`` file."""
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short when the browser exits
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] == start_job and params.get("initiator", "not an origin") != "not an origin":
            urls.append(params["url"])
    return [url for url in urls if not url.startswith(("file:", "data:", "blob:"))]


@pytest.fixture(scope="session")
def visit(chromium, tmp_path_factory):
    """``visit(url)``: the :class:`Visit` of a page (a file or a URL), opened once per session."""
    visits: dict[str, Visit] = {}

    def opened(page: Path | str) -> Visit:
        key = str(page)
        if key not in visits:
            folder = tmp_path_factory.mktemp("visit")
            dom = headless_chromium(
                chromium,
                page,
                folder / "profile",
                f"--log-net-log={folder / 'net.json'}",
                "--window-size=1280,2000",
                "--virtual-time-budget=15000",
                "--dump-dom",
            ).stdout
            visits[key] = Visit(dom, page_requests(folder / "net.json"))
        return visits[key]

    return opened


def test_the_request_log_sees_what_a_page_and_its_scripts_fetch(visit, tmp_path):
    """A control for the test below: a page that loads a script and fetches data from another host."""
    page = tmp_path / "page.html"
    page.write_text(
        '<html><head><script src="https://cdn.example.invalid/lib.js"></script></head><body>'
        '<script>fetch("https://data.example.invalid/table.json").catch(() => {});</script></body></html>'
    )
    requests = visit(page).requests
    assert "https://cdn.example.invalid/lib.js" in requests
    assert "https://data.example.invalid/table.json" in requests
    assert parsed(page).loads == ["https://cdn.example.invalid/lib.js"]


@pytest.mark.parametrize("name", PAGES)
def test_a_page_loads_nothing_from_another_host(name, site, visit):
    page = site / f"{name}.html"
    named = [url for url in parsed(page).loads if is_external(url)]
    fetched = visit(page).requests
    assert named == [] and fetched == [], f"{name}: loads {named} and fetches {fetched}"


def test_the_search_page_finds_a_chapter_offline(site, visit):
    dom = visit(f"{(site / 'search.html').as_uri()}?q=latent+arithmetic").dom
    found = re.search(r"found (\d+) page", dom)
    assert found and int(found[1]) > 0, "the search found nothing (did searchindex.js load?)"
    assert "03_scgen.html" in dom


TRAINING = {"03_scgen": "scgen", "04_scpram": "scpram"}
"""Chapters that train a model, and the name on its progress bar."""


@pytest.mark.parametrize(("chapter", "model"), TRAINING.items())
def test_the_page_shows_the_finished_training_bars(chapter, model, site, visit):
    text = html.unescape(visit(site / "book" / f"{chapter}.html").dom)
    assert re.search(rf"{model}: 100%\|█+\| (\d+)/\1 \[", text), (
        f"{chapter}: no finished {model} bar on the page"
    )


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_output_of_a_chapter_is_an_empty_widget(chapter, site, book_copy):
    page = (site / "book" / f"{chapter}.html").read_text()
    assert "application/vnd.jupyter.widget" not in page, f"{chapter}: a widget the static page cannot show"
    assert not re.search(r'<div class="cell_output docutils container">\s*</div>', page), (
        f"{chapter}: empty output"
    )


def test_the_cell_type_menu_of_chapter_3_is_a_still_image_that_says_how_to_use_it(site, visit):
    dom = visit(site / "book" / "03_scgen.html").dom
    still = re.search(r'<div class="widget-still">(.*?)</div>', dom, flags=re.DOTALL)
    assert still, "chapter 3 shows no still image of its drop-down menu"
    assert html.escape(STILL_NOTE, quote=False) in still[1]
    options = re.findall(r"<option[^>]*>([^<]+)</option>", still[1])
    assert "CD4 T cells" in options and len(options) >= 3


@pytest.mark.parametrize("name", PAGES)
def test_every_figure_has_alt_text_or_a_caption(name, site):
    missing = [
        src
        for src, alt, captioned in parsed(site / f"{name}.html").images
        if not captioned and (not alt or alt == src or re.search(r"\.(png|jpe?g|svg|gif)$", alt))
    ]
    assert missing == [], f"{name}: images without alt text or caption: {missing}"


AXE_CORE = (
    "4.14.1",
    "FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
)
"""The axe-core release the accessibility test runs (npm), and the sha512 of its package."""

AXE_RULES = [
    "color-contrast",
    "heading-order",
    "empty-heading",
    "page-has-heading-one",
    "p-as-heading",
    "image-alt",
    "document-title",
    "html-has-lang",
]
"""axe-core's checks of contrast, headings and image text that every page must pass."""


@pytest.fixture(scope="session")
def axe_core(pytestconfig) -> Path:
    """``axe.min.js`` of :data:`AXE_CORE`, fetched once with npm into pytest's cache and verified."""
    version, integrity = AXE_CORE
    folder = pytestconfig.cache.mkdir("axe-core")
    script = folder / f"axe-{version}.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "npm is not installed: the accessibility test gets axe-core with it (install Node.js)"
            )
        subprocess.run(
            [npm, "pack", f"axe-core@{version}", "--pack-destination", folder],
            check=True,
            capture_output=True,
        )
        package = folder / f"axe-core-{version}.tgz"
        digest = base64.b64encode(hashlib.sha512(package.read_bytes()).digest()).decode()
        assert digest == integrity, (
            f"{package.name}: sha512 {digest}, expected {integrity}; delete it and retry"
        )
        with tarfile.open(package) as archive:
            script.write_bytes(archive.extractfile("package/axe.min.js").read())
        package.unlink()
    return script


def axe_violations(page: Path, visit, axe_core: Path) -> list:
    """``[rule, [element, ...]]`` of every :data:`AXE_RULES` check that ``page`` fails in Chromium.

    axe-core runs in a copy of the page next to it (so that its files load), once the page has loaded.
    """
    checked = page.with_name(f"{page.stem}.axe.html")
    runner = f"""<script src="{axe_core.as_uri()}"></script><script>
const options = {{runOnly: {{type: "rule", values: {json.dumps(AXE_RULES)}}}}};
const report = found => {{ document.documentElement.dataset.axeViolations = JSON.stringify(found); }};
window.addEventListener("load", () => axe.run(document, options).then(
  result => report(result.violations.map(v => [v.id, v.nodes.map(n => n.target.join(" "))])),
  error => report([["axe-core failed", [String(error)]]]),
));
</script></body>"""
    checked.write_text(page.read_text().replace("</body>", runner))
    try:
        found = re.search(r'data-axe-violations="([^"]*)"', visit(checked).dom)
    finally:
        checked.unlink()
    assert found, f"{page.name}: axe-core did not run"
    return json.loads(html.unescape(found[1]))


def test_the_accessibility_check_sees_low_contrast_and_a_skipped_heading_level(visit, axe_core, tmp_path):
    """A control for the test below: a page with pale text and an h3 right after its h1."""
    page = tmp_path / "page.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>A page</title></head><body><main><h1>Title</h1>'
        '<h3>Skipped a level</h3><p style="color: #ccc; background: #fff">Pale text</p></main></body></html>'
    )
    assert sorted(rule for rule, _ in axe_violations(page, visit, axe_core)) == [
        "color-contrast",
        "heading-order",
    ]


@pytest.mark.parametrize("name", PAGES)
def test_a_page_passes_the_accessibility_checks_of_contrast_and_headings(name, site, visit, axe_core):
    assert axe_violations(site / f"{name}.html", visit, axe_core) == [], f"{name}: accessibility violations"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_header_offers_every_way_to_run_the_chapter(chapter, site):
    page = (site / "book" / f"{chapter}.html").read_text()
    repository = book_repository_url(ROOT / "_config.yml")
    owner_repo = repository.split("github.com/", 1)[1]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    branch = config["sphinx"]["config"]["executed_notebooks_branch"]
    for download in (f"{chapter}.ipynb", f"{chapter}.py"):
        assert f'href="../_sources/book/{download}"' in page, f"{chapter}: no {download} download"
        assert (site / "_sources" / "book" / download).exists()
    links = [
        f"https://mybinder.org/v2/gh/{owner_repo}/main?urlpath=lab/tree/book/{chapter}.ipynb",
        f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/book/{chapter}.ipynb",
        f'href="{repository}"',
    ]
    assert [link for link in links if link not in page] == []
    assert "thebe" not in page.lower(), f"{chapter}: Thebe is loaded"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_downloaded_notebook_sets_itself_up_on_colab_and_the_page_hides_that(chapter, site):
    notebook = nbformat.read(site / "_sources" / "book" / f"{chapter}.ipynb", as_version=4)
    first = notebook.cells[0]
    assert 'find_spec("course_lib") is None' in first.source
    assert book_repository_url(ROOT / "_config.yml") in first.source
    assert "remove-cell" in first.metadata["tags"]
    assert "find_spec" not in (site / "book" / f"{chapter}.html").read_text()


def test_the_workshop_schedule_prints_on_one_page(site, chromium, tmp_path):
    pdf = tmp_path / "schedule.pdf"
    headless_chromium(
        chromium,
        site / "book" / "schedule.html",
        tmp_path / "profile",
        "--no-pdf-header-footer",
        "--virtual-time-budget=10000",
        f"--print-to-pdf={pdf}",
    )
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf.read_bytes()))
    assert pages == 1, f"the printed schedule has {pages} pages"


# --- Layout at a laptop's width: overflow, figure scale, tables, and what the build machine leaked ---

LAPTOP_WIDTH = 1280
"""The window width (CSS pixels) of a laptop screen, at which :func:`visit` opens every page."""

COLUMN = "main article, main .bd-search-container"
"""The page's content column: ``article.bd-article`` inside ``main#main-content`` (the search page has
no article: its results box)."""

OUTPUT = ".cell_output, .output"
"""What a chapter printed or displayed (myst-nb's cell outputs)."""

SMALLEST_TEXT_PT = min(*FONT_SIZES.values(), ANNOTATION_SIZE)
"""The smallest text (points) that the course's style puts in a figure."""

MIN_SCALE = 0.96
"""A figure may be shown at no less than this share of its natural size (a tight bounding box can make it
a few pixels wider than :data:`MAX_WIDTH`)."""

MIN_FIGURE_TEXT_PX = MIN_SCALE * SMALLEST_TEXT_PT * DPI / 72
"""Smallest text of a figure on the page (CSS pixels): its smallest font shown at :data:`MIN_SCALE`
of its natural size at :data:`DPI` (72 points make an inch), about 13 pixels."""

MEASURE = """<script>
(() => {
  const [COLUMN, OUTPUT] = SELECTORS;
  let main = null;
  const style = el => getComputedStyle(el);
  const scrolls = el => ["auto", "scroll"].includes(style(el).overflowX);
  const clips = el => ["hidden", "clip"].includes(style(el).overflowX);
  // Where an element is: the id of its section, up to three levels of tags, ids and classes inside
  // it, and (withText) the start of its text or its image file.
  const describe = (el, withText = true) => {
    const names = [];
    for (let node = el; node && node !== main && names.length < 3; node = node.parentElement) {
      if (node.localName === "section" && node !== el) break;
      const classes = [...node.classList].filter(name => !["docutils", "container"].includes(name));
      const id = node.id ? "#" + node.id : "";
      names.unshift(node.localName + id + classes.slice(0, 2).map(name => "." + name).join(""));
    }
    const section = el.parentElement && el.parentElement.closest("section[id]");
    const text = withText ? (el.getAttribute("src") || el.innerText || "").replace(/\\s+/g, " ").trim() : "";
    return (section ? `#${section.id}: ` : "") + names.join(" > ")
      + (text ? ` ("${text.slice(0, 90)}")` : "");
  };
  const box = el => {
    const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, width: r.width};
  };
  const visible = el => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && style(el).visibility !== "hidden";
  };
  // The nearest ancestor (inside the column) that scrolls or clips horizontally.
  const container = el => {
    for (let node = el.parentElement; node && node !== main; node = node.parentElement) {
      if (scrolls(node) || clips(node)) return node;
    }
    return null;
  };
  const measure = () => {
    main = document.querySelector(COLUMN);
    if (!main) return {column: null, width: window.innerWidth};
    const edge = main.getBoundingClientRect();
    const wide = [];
    const reported = new Set();
    for (const el of main.querySelectorAll("*")) {
      if (!visible(el)) continue;
      const r = el.getBoundingClientRect();
      if (r.right <= edge.right + 1 && r.left >= edge.left - 1) continue;
      let parent = el.parentElement;
      while (parent && parent !== main && !reported.has(parent)) parent = parent.parentElement;
      if (parent && parent !== main) continue;  // inside an element already reported
      const holder = container(el);
      if (holder && scrolls(holder)) continue;  // the reader scrolls it
      reported.add(el);
      wide.push({element: describe(el), box: box(el), clipped: holder ? describe(holder) : null});
    }
    const images = [...main.querySelectorAll("img")].filter(visible).map(img => {
      const s = style(img);
      const frame = ["paddingLeft", "paddingRight", "borderLeftWidth", "borderRightWidth"]
        .reduce((sum, name) => sum + parseFloat(s[name]), 0);
      return {element: describe(img), src: img.getAttribute("src"), natural: img.naturalWidth,
              rendered: img.getBoundingClientRect().width - frame};
    });
    const tables = [...main.querySelectorAll("table")].filter(visible).map(table => {
      const holder = scrolls(table) ? table : container(table);
      const held = holder && {element: describe(holder), box: box(holder), scrolls: scrolls(holder)};
      return {element: describe(table), box: box(table), content: table.scrollWidth, holder: held};
    });
    const texts = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      if (!node.data.trim() || el.closest("script, style, noscript, template")) continue;
      texts.push({element: describe(el, false), text: node.data, output: !!el.closest(OUTPUT)});
    }
    for (const el of document.body.querySelectorAll("[alt], [title], [href], [src]")) {
      for (const name of ["alt", "title", "href", "src"]) {
        const value = el.getAttribute(name);
        const output = !!el.closest(OUTPUT);
        if (value) texts.push({element: `${describe(el, false)} [${name}]`, text: value, output});
      }
    }
    return {
      width: window.innerWidth, column: box(main),
      scrollWidth: main.scrollWidth, clientWidth: main.clientWidth,
      pageScrollWidth: document.documentElement.scrollWidth, wide, images, tables, texts,
    };
  };
  const report = found => { document.documentElement.dataset.layout = JSON.stringify(found); };
  window.addEventListener("load", async () => {
    try {
      if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
      await new Promise(done => setTimeout(done, 1000));  // the theme's scripts settle the layout
      report(measure());
    } catch (error) { report({error: String(error)}); }
  });
})();
</script></body>""".replace("SELECTORS", json.dumps([COLUMN, OUTPUT]))
"""Measures, once the page (and MathJax) is done, what the layout checks read (:func:`layout`)."""


@pytest.fixture(scope="session")
def layout(visit):
    """``layout(page)``: what :data:`MEASURE` measured of ``page`` (an HTML file) in Chromium, at the
    :data:`LAPTOP_WIDTH` of :func:`visit`; the measuring copy lies next to the page, so its files load."""
    measured: dict[Path, dict] = {}

    def of(page: Path) -> dict:
        if page not in measured:
            copy = page.with_name(f"{page.stem}.layout.html")
            copy.write_text(page.read_text().replace("</body>", MEASURE))
            try:
                found = re.search(r'data-layout="([^"]*)"', visit(copy).dom)
            finally:
                copy.unlink()
            assert found, f"{page.name}: the layout was not measured (did the page load?)"
            measured[page] = json.loads(html.unescape(found[1]))
            assert "error" not in measured[page], f"{page.name}: {measured[page]['error']}"
        return measured[page]

    return of


def overflow_problems(measured: dict) -> list[str]:
    """What sticks out of the content column: the column or the page scrolling sideways, and every
    element past the column's edges that no scrolling container holds (clipped, if one that hides its
    overflow does)."""
    if measured["column"] is None:
        return [f"no content column ({COLUMN})"]
    problems = []
    if measured["scrollWidth"] > measured["clientWidth"] + 1:
        problems.append(
            f"the column is {measured['scrollWidth']} px wide inside, {measured['clientWidth']} px shown"
        )
    if measured["pageScrollWidth"] > measured["width"] + 1:
        problems.append(
            f"the page scrolls sideways: {measured['pageScrollWidth']} px in a {measured['width']} px window"
        )
    column = measured["column"]
    for wide in measured["wide"]:
        past = max(wide["box"]["right"] - column["right"], column["left"] - wide["box"]["left"])
        how = f"clipped by {wide['clipped']}" if wide["clipped"] else "sticks out of the column"
        problems.append(f"{wide['element']} {how} by {past:.0f} px")
    return problems


def png_dpi(data: bytes) -> float | None:
    """The dots per inch that a PNG records (its ``pHYs`` chunk, which matplotlib writes), or None."""
    found = re.search(rb"pHYs(.{4})(.{4})\x01", data[:4096], flags=re.DOTALL)
    return int.from_bytes(found[1], "big") * 0.0254 if found else None


def figure_problems(measured: dict, page: Path) -> list[str]:
    """Figures too small to read or too wide for the column.

    A figure's inches are its natural width over its dots per inch (what its PNG records, else
    :data:`DPI`); the width it is shown at gives the pixels per inch on the page, and so the size of its
    :data:`SMALLEST_TEXT_PT`-point text, which must be at least :data:`MIN_FIGURE_TEXT_PX`.
    """
    problems = []
    for image in measured["images"]:
        if image["natural"] == 0:
            problems.append(f"{image['element']}: the image did not load")
            continue
        if image["rendered"] > measured["column"]["width"] + 1:
            problems.append(
                f"{image['element']} is shown {image['rendered']:.0f} px wide, wider than the "
                f"{measured['column']['width']:.0f} px column"
            )
        src = image["src"]
        if src.startswith("data:image/png;base64,"):
            data = base64.b64decode(src.split(",", 1)[1])
        elif src.lower().split("?")[0].endswith(".png"):
            data = (page.parent / src.split("?")[0]).read_bytes()
        else:
            continue  # not a figure (an SVG icon, a photo)
        dpi = png_dpi(data) or DPI
        inches = image["natural"] / dpi
        text = SMALLEST_TEXT_PT / 72 * image["rendered"] / inches
        if text < MIN_FIGURE_TEXT_PX - 0.05:
            problems.append(
                f"{image['element']}: {image['natural']} px at {dpi:.0f} dpi ({inches:.2f} in) shown "
                f"{image['rendered']:.0f} px wide, so its {SMALLEST_TEXT_PT}-pt text is {text:.1f} px "
                f"(at least {MIN_FIGURE_TEXT_PX:.1f} px)"
            )
    return problems


def table_problems(measured: dict) -> list[str]:
    """Tables cut off on the screen: a table must fit the column, or scroll inside a container that fits
    it (book/_static/tables.css makes output tables scroll themselves); none may be clipped."""
    column = measured["column"]
    problems = []
    for table in measured["tables"]:
        holder = table["holder"]
        shown = holder["box"] if holder and holder["scrolls"] else table["box"]
        if shown["right"] > column["right"] + 1 or shown["left"] < column["left"] - 1:
            where = f" scrolls in {holder['element']}, which" if holder and holder["scrolls"] else ""
            problems.append(
                f"{table['element']}{where} runs {shown['right'] - column['right']:.0f} px past the column"
            )
        elif holder and not holder["scrolls"] and table["box"]["right"] > holder["box"]["right"] + 1:
            problems.append(f"{table['element']} is clipped by {holder['element']}")
    return problems


def machine_strings() -> dict[str, bool]:
    """Strings that no page may show, each with whether only outputs are searched for it: paths of the
    machine that built the site (its checkout, the folder above it, the home folder, ``/root/``, and,
    in outputs, its temporary folder: the prose may name ``/tmp`` in a command) and Python's default
    reprs, which say nothing to a reader."""
    temporary = Path(tempfile.gettempdir())
    paths = {path for path in (ROOT, ROOT.parent, Path.home()) if len(path.parts) > 1}
    return {
        **{f"{path}/": temporary.is_relative_to(path) for path in paths},
        "/root/": False,
        f"{temporary}/": True,
        "Distribution(": False,
        "object at 0x": False,
    }


def leak_problems(measured: dict, forbidden: dict[str, bool] | None = None) -> list[str]:
    """Every text (or link, image source, alt text) of the page that holds a :func:`machine_strings` one."""
    forbidden = machine_strings() if forbidden is None else forbidden
    longest_first = sorted(forbidden, key=len, reverse=True)
    problems = []
    for text in measured["texts"]:
        found: list[tuple[int, int]] = []  # a path inside a longer one found (the checkout's) counts once
        for string in longest_first:
            if forbidden[string] and not text["output"]:
                continue
            for match in re.finditer(re.escape(string), text["text"]):
                if not any(start <= match.start() and match.end() <= end for start, end in found):
                    found.append(match.span())
                    context = " ".join(text["text"][max(0, match.start() - 40) : match.end() + 40].split())
                    problems.append(f"{string!r} in {text['element']}: ...{context}...")
    return problems


def synthetic_page(folder: Path, body: str, *, css: str = "") -> Path:
    """A page with a content column as narrow as the book's, holding ``body``."""
    page = folder / "page.html"
    page.write_text(
        f'<!DOCTYPE html><html lang="en"><head><title>A page</title><style>{css}</style></head><body>'
        '<main style="display:flex"><nav style="width:300px;flex:none"></nav>'
        f'<article style="width:680px;flex:none">{body}</article></main></body></html>'
    )
    return page


def test_the_overflow_check_sees_an_element_wider_than_the_column(layout, tmp_path):
    """A control for the test below: a wide element sticks out, one in a scrolling box does not."""
    page = synthetic_page(
        tmp_path,
        '<p>Text</p><div id="wide" style="width:900px">wide</div>'
        '<div style="overflow-x:auto"><div style="width:900px">scrolls</div></div>'
        '<div style="overflow:hidden"><pre id="cut" style="width:900px">cut off</pre></div>',
    )
    problems = overflow_problems(layout(page))
    assert any("div#wide" in p and "sticks out of the column by 220 px" in p for p in problems)
    assert any("pre#cut" in problem and "clipped by" in problem for problem in problems)
    assert not any("scrolls" in problem for problem in problems)
    assert any("the column is 900 px wide inside" in problem for problem in problems)


def test_the_overflow_check_passes_a_page_that_fits(layout, tmp_path):
    page = synthetic_page(
        tmp_path, '<p>Text</p><div style="overflow-x:auto"><div style="width:900px">x</div></div>'
    )
    measured = layout(page)
    assert overflow_problems(measured) == [] and measured["width"] == LAPTOP_WIDTH


def figure_png(path: Path, width: float) -> Path:
    """A figure of the course's style, ``width`` inches wide, saved as the executed chapters save them."""
    with matplotlib.rc_context(FONT_SIZES):
        figure, grid = new_figure(panel_size=(width, 3))
        axes = grid[0, 0]
        axes.plot([0, 1], [0, 1], label="a line")
        axes.set(title="A title", xlabel="x", ylabel="y")
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def test_the_figure_check_sees_a_shrunk_figure_and_passes_one_at_its_natural_size(layout, tmp_path):
    """A control for the test below: the same figure shown at its natural size, at 80% of it, and a wide
    figure that the column shrinks."""
    figure_png(tmp_path / "fits.png", MAX_WIDTH - 0.5)
    figure_png(tmp_path / "wide.png", 2 * MAX_WIDTH)
    page = synthetic_page(
        tmp_path,
        '<img id="natural" src="fits.png" alt="fits">'
        '<img id="small" src="fits.png" style="width:80%" alt="small">'
        '<img id="shrunk" src="wide.png" style="max-width:100%" alt="wide">',
    )
    problems = figure_problems(layout(page), page)
    assert len(problems) == 2, problems
    assert 'img#small ("fits.png"):' in problems[0] and "shown 544 px wide" in problems[0]
    assert 'img#shrunk ("wide.png"):' in problems[1] and f"at {DPI} dpi" in problems[1]


def test_the_table_check_sees_a_wide_table_that_the_book_css_makes_scroll(layout, tmp_path):
    """A control for the test below: a wide output table sticks out, and book/_static/tables.css makes
    it scroll inside the column instead."""
    cells = "".join(f"<td>column_{i}_with_a_long_name</td>" for i in range(12))  # no line breaks
    body = f'<div class="cell_output"><table class="dataframe" id="wide"><tr>{cells}</tr></table></div>'
    problems = table_problems(layout(synthetic_page(tmp_path, body)))
    assert len(problems) == 1 and "table#wide" in problems[0] and "past the column" in problems[0]
    css = (ROOT / "book" / "_static" / "tables.css").read_text()
    (tmp_path / "styled").mkdir()
    styled = layout(synthetic_page(tmp_path / "styled", body, css=css))
    assert table_problems(styled) == [] and overflow_problems(styled) == []
    assert styled["tables"][0]["content"] > styled["column"]["width"]  # it scrolls, it is not squeezed


def test_the_leak_check_sees_a_path_of_the_build_machine_and_a_default_repr(layout, tmp_path):
    """A control for the test below: a temporary path and a repr in an output, the checkout's path in a
    link, the home folder in a tooltip, an object's repr in the prose; and ``/tmp`` in a command of the
    prose, which is allowed."""
    temporary = Path(tempfile.gettempdir()) / "tmpab12cd" / "model.pt"
    page = synthetic_page(
        tmp_path,
        "<p>Start it with <code>cluster start /tmp/cluster</code>.</p><div class='cell_output'><pre>"
        f"saved to {temporary}\n&lt;course_lib.Model object at 0x7f00&gt;</pre></div>"
        f'<p>Read <a href="{ROOT}/README.md">the README</a>, <span title="/root/.cache/course">the cache'
        "</span> and <code>FloatDistribution(high=0.5, log=False, low=0.0)</code>.</p>",
    )
    problems = leak_problems(layout(page))
    assert any(
        problem.startswith(f"'{temporary.parent.parent}/' in div.cell_output > pre") for problem in problems
    )
    assert any("object at 0x7f00" in problem for problem in problems)
    assert [problem for problem in problems if "[href]" in problem] == [
        f"'{ROOT}/' in p > a [href]: ...{ROOT}/README.md..."
    ]  # once, not again for the folder above the checkout
    assert any(problem.startswith("'/root/' in p > span [title]") for problem in problems)
    assert any(problem.startswith("'Distribution(' in p > code") for problem in problems)
    assert not any("/tmp/cluster" in problem for problem in problems)


@pytest.mark.parametrize("name", PAGES)
def test_nothing_on_a_page_runs_past_the_column_at_laptop_width(name, site, layout):
    measured = layout(site / f"{name}.html")
    assert measured["width"] == LAPTOP_WIDTH
    problems = overflow_problems(measured)
    assert problems == [], f"{name} at {LAPTOP_WIDTH} px:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", PAGES)
def test_every_figure_is_shown_at_a_size_whose_text_reads(name, site, layout):
    page = site / f"{name}.html"
    problems = figure_problems(layout(page), page)
    assert problems == [], f"{name} at {LAPTOP_WIDTH} px:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", PAGES)
def test_no_table_is_cut_off_at_laptop_width(name, site, layout):
    problems = table_problems(layout(site / f"{name}.html"))
    assert problems == [], f"{name} at {LAPTOP_WIDTH} px:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", PAGES)
def test_no_page_shows_a_path_of_the_build_machine_or_a_default_repr(name, site, layout):
    problems = leak_problems(layout(site / f"{name}.html"))
    assert problems == [], f"{name}:\n" + "\n".join(problems)
