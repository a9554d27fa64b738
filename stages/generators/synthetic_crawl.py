"""A generated web crawl written as real WARC.gz: the built-in default source, and a labelled
benchmark for the data-curation stages.

Every page is a pure function of ``(config, page_id)`` and is assembled from parts (one function
each: article, navigation, cookie banner, sidebar, footer, HTML shell, encoding). Each WARC file
holds ``pages_per_file`` HTML page responses, of which some are exact duplicates (the same bytes
under another URL of the same site) or URL variants (the same page under a URL that
``url_dedup.normalize_url`` folds to the canonical one), plus records that ingest must skip: a
``warcinfo`` record first, ``request`` and ``metadata`` records, a 404, a 301 redirect, a PNG
image and a CSS stylesheet. Output is byte-identical for the same config (no wall clock, no
random UUIDs: dates and record ids derive from the seed).

Labelled pages. A share of the original page slots of every file carries a labelled document
from ``stages.generators.labelled_corpus`` as its article body (counts per file = ``rate * pages_per_file``,
rounded; see ``SyntheticCrawlConfig``):

* ``near_dup`` / ``far_pair``: pairs of pages at a measured word-5-gram Jaccard of their article
  text (J >= 0.9, 0.6-0.9, and <= 0.5). The first page of a pair lives in file f, the second in
  file f+1 (mod ``num_files``) on another site of the same language: dedup has to be global.
* ``spam:<kind>``: the ``labelled_corpus.SPAM_GENERATORS`` kinds in turn, on spam sites.
* ``pii``: news articles with planted PII and PII look-alikes (each in parentheses in a natural
  sentence of the site).
* ``code`` (on code sites, in ``<pre><code>``) and ``math`` (on ``math_domains`` dedicated math
  sites, one URL section each, so a URL-prefix loop can find them).
* ``boilerplate``: news articles carrying 1-2 of ``boilerplate_pool`` cross-site notices (in the
  site's language).
* ``contaminated``: English news articles with one of ``eval_items(seed, eval_pool)`` as a paragraph.

Every labelled page but spam, code and math is a news article of its site written with the
site's language pack and sentence generator (as natural pages are), plus its planted items, so
a stage sees realistic input (e.g. the reference LM's perplexity of a PII page differs from a
natural page's only through the planted strings).

All other pages are ``natural`` news articles (>= 60 % of the documents). Duplicates and URL
variants only copy natural pages, so every labelled document occurs exactly once. Ground truth:
``write_warc_file`` returns one row per record with the labels (``GROUND_TRUTH_SCHEMA``);
``ground_truth_table(config)`` collects them for the whole crawl.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import random
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from io import BytesIO
from typing import BinaryIO
from urllib.parse import quote

import pyarrow as pa
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from deeprecipe.stages.generators import labelled_corpus

# ---------------------------------------------------------------------------------------------
# Per-language text material. Sentences are templates over subject / verb / object / place slots;
# with ~25 x 20 x 25 x 15 fillers per template, pages are distinct and read as the language.


@dataclass(frozen=True)
class LanguagePack:
    """Words, sentence templates and site-furniture strings for one language."""
    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    adjectives: tuple[str, ...]
    places: tuple[str, ...]
    connectors: tuple[str, ...]
    names: tuple[str, ...]
    sentence_templates: tuple[str, ...]
    title_templates: tuple[str, ...]
    nav_labels: tuple[str, ...]
    cookie_text: str          # {site}
    cookie_buttons: tuple[str, str]
    footer_lines: tuple[str, ...]  # {site}, {year}, {street}
    sidebar_heading: str
    share_text: str
    byline: str               # {name}, {date}
    months: tuple[str, ...]
    section_slug: str


LANGUAGE_PACKS: dict[str, LanguagePack] = {
    "en": LanguagePack(
        subjects=("the city council", "the new government", "a local company", "the research team",
                  "the football club", "our reporter", "the regional hospital", "the university",
                  "the ministry", "a group of residents", "the museum", "the national bank",
                  "the weather service", "the transport authority", "the school board",
                  "the film festival", "the orchestra", "the young startup", "the police department",
                  "the farmers' union", "the public library", "the railway company",
                  "the port authority", "the energy provider", "the housing association"),
        verbs=("announced", "presented", "criticised", "approved", "rejected", "discussed",
               "postponed", "welcomed", "published", "defended", "questioned", "supported",
               "reviewed", "completed", "launched", "cancelled", "described", "explained",
               "expanded", "financed"),
        objects=("a new plan", "the budget", "the proposal", "several projects", "the results",
                 "a long report", "the final decision", "new rules", "the old bridge",
                 "the annual festival", "the price increase", "the first season", "a public debate",
                 "the water supply", "the local market", "the tax reform", "the new stadium",
                 "the election results", "the bus network", "the harvest", "a detailed study",
                 "the exhibition", "the renovation", "the cycling lanes", "the opening hours"),
        adjectives=("important", "controversial", "unusual", "expensive", "successful", "difficult",
                    "surprising", "popular", "necessary", "ambitious", "modest", "remarkable",
                    "uncertain", "promising", "historic"),
        places=("in the city centre", "near the river", "at the town hall", "in the northern district",
                "on Monday evening", "during the summer", "after a long meeting",
                "at the weekend", "outside the station", "across the region",
                "before the holidays", "in a small village", "at the harbour", "on the main square",
                "behind closed doors"),
        connectors=("However", "Meanwhile", "In addition", "On the other hand", "Last year",
                    "For this reason", "Nevertheless", "At the same time", "Surprisingly",
                    "As expected"),
        names=("Sarah Miller", "James Carter", "Emily Brown", "Daniel Wright", "Laura Hughes",
               "Michael Evans", "Olivia Turner", "Thomas Green"),
        sentence_templates=(
            "{S} {V} {O} {P}.",
            "{C}, {s} {V} {O} {P}.",
            "According to {N}, {o} {P} is {A} and will stay so.",
            "Many people {P} think that {o} is {A}, but {s} does not agree.",
            "{S} {V} {O} {P}, and {s2} {V2} {O2}.",
            "It is {A} that {s} {V} {O} {P}.",
            "In {Y}, {s} {V} {O} for the first time.",
            "\u201cThis is really {A} for {o},\u201d said {N} in {Y}.",
            "About {D} percent of the residents {P} said that {o} was {A}.",
            "{N} explained why {s} {V} {O} {P}.",
        ),
        title_templates=("{S} {V} {O}", "Why {o} is {A}", "{O}: what you need to know",
                         "{N} on {o} {P}"),
        nav_labels=("Home", "News", "Politics", "Business", "Sport", "Culture", "Opinion", "Contact"),
        cookie_text=("We use cookies to improve your experience on {site}. By continuing to browse "
                     "this site you agree to our use of cookies."),
        cookie_buttons=("Accept all", "Cookie settings"),
        footer_lines=("\u00a9 {year} {site}. All rights reserved.",
                      "Imprint \u00b7 Privacy policy \u00b7 Terms of use \u00b7 Advertise with us",
                      "Subscribe to the {site} newsletter and never miss a story.",
                      "{site} Media Ltd, {street}"),
        sidebar_heading="Most read on {site}",
        share_text="Share this article on social media",
        byline="By {name} | {date}",
        months=("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"),
        section_slug="news",
    ),
    "de": LanguagePack(
        subjects=("der Stadtrat", "die neue Regierung", "ein lokales Unternehmen", "das Forschungsteam",
                  "der Fu\u00dfballverein", "unsere Reporterin", "das Krankenhaus", "die Universit\u00e4t",
                  "das Ministerium", "eine Gruppe von Anwohnern", "das Museum", "die Landesbank",
                  "der Wetterdienst", "die Verkehrsbetriebe", "der Schulrat", "das Filmfestival",
                  "das Orchester", "das junge Unternehmen", "die Polizei", "der Bauernverband",
                  "die Stadtbibliothek", "die Bahn", "die Hafenbeh\u00f6rde", "der Energieversorger",
                  "die Wohnungsgenossenschaft"),
        verbs=("pr\u00e4sentiert", "kritisiert", "genehmigt", "diskutiert", "verschiebt", "begr\u00fc\u00dft",
               "ver\u00f6ffentlicht", "verteidigt", "unterst\u00fctzt", "\u00fcberpr\u00fcft", "beendet",
               "startet", "beschreibt", "erkl\u00e4rt", "erweitert", "finanziert", "plant", "fordert",
               "best\u00e4tigt", "untersucht"),
        objects=("einen neuen Plan", "den Haushalt", "den Vorschlag", "mehrere Projekte",
                 "die Ergebnisse", "einen langen Bericht", "die endg\u00fcltige Entscheidung",
                 "neue Regeln", "die alte Br\u00fccke", "das j\u00e4hrliche Stadtfest",
                 "die Preiserh\u00f6hung", "die erste Saison", "eine \u00f6ffentliche Debatte",
                 "die Wasserversorgung", "den Wochenmarkt", "die Steuerreform", "das neue Stadion",
                 "die Wahlergebnisse", "das Busnetz", "die Ernte", "eine ausf\u00fchrliche Studie",
                 "die Ausstellung", "die Renovierung", "die Radwege", "die \u00d6ffnungszeiten"),
        adjectives=("wichtig", "umstritten", "ungew\u00f6hnlich", "teuer", "erfolgreich", "schwierig",
                    "\u00fcberraschend", "beliebt", "notwendig", "ehrgeizig", "bescheiden",
                    "bemerkenswert", "unsicher", "vielversprechend", "historisch"),
        places=("in der Innenstadt", "am Fluss", "im Rathaus", "im n\u00f6rdlichen Stadtteil",
                "am Montagabend", "w\u00e4hrend des Sommers", "nach einer langen Sitzung",
                "am Ende der Woche", "vor dem Bahnhof", "in der ganzen Region", "vor den Ferien",
                "in einem kleinen Dorf", "am Hafen", "auf dem Marktplatz",
                "hinter verschlossenen T\u00fcren"),
        connectors=("Trotzdem", "Inzwischen", "Au\u00dferdem", "Andererseits", "Im vergangenen Jahr",
                    "Aus diesem Grund", "Dennoch", "Gleichzeitig", "\u00dcberraschenderweise",
                    "Wie erwartet"),
        names=("Anna Schmidt", "Lukas Weber", "Julia Fischer", "Felix Wagner", "Laura Becker",
               "Jonas Hoffmann", "Mia Schulz", "Paul Richter"),
        sentence_templates=(
            "{S} {V} {O} {P}.",
            "{C} {V} {s} {O} {P}.",
            "Nach Angaben von {N} ist die Lage {P} {A} und bleibt es.",
            "Viele Menschen {P} glauben, dass {o} {A} ist, aber {s} sieht das anders.",
            "{S} {V} {O} {P}, und {s2} {V2} {O2}.",
            "Es ist {A}, dass {s} {O} {P} {V}.",
            "Im Jahr {Y} {V} {s} zum ersten Mal {O}.",
            "\u201eDas ist wirklich {A} f\u00fcr {o}\u201c, sagte {N} im Jahr {Y}.",
            "Rund {D} Prozent der Bewohner {P} halten die Entscheidung f\u00fcr {A}.",
            "{N} erkl\u00e4rte, warum {s} {O} {P} {V}.",
        ),
        title_templates=("{S} {V} {O}", "Warum die Lage {A} ist", "{O}: Was Sie wissen m\u00fcssen",
                         "{N} \u00fcber {o} {P}"),
        nav_labels=("Startseite", "Nachrichten", "Politik", "Wirtschaft", "Sport", "Kultur",
                    "Meinung", "Kontakt"),
        cookie_text=("Wir verwenden Cookies, um Ihnen auf {site} das beste Nutzererlebnis zu bieten. "
                     "Wenn Sie die Seite weiter nutzen, stimmen Sie der Verwendung von Cookies zu."),
        cookie_buttons=("Alle akzeptieren", "Einstellungen"),
        footer_lines=("\u00a9 {year} {site}. Alle Rechte vorbehalten.",
                      "Impressum \u00b7 Datenschutz \u00b7 Nutzungsbedingungen \u00b7 Werben bei uns",
                      "Abonnieren Sie den Newsletter von {site} und verpassen Sie keine Nachricht.",
                      "{site} Verlag GmbH, {street}"),
        sidebar_heading="Meistgelesen auf {site}",
        share_text="Diesen Artikel in sozialen Netzwerken teilen",
        byline="Von {name} | {date}",
        months=("Januar", "Februar", "M\u00e4rz", "April", "Mai", "Juni", "Juli", "August",
                "September", "Oktober", "November", "Dezember"),
        section_slug="artikel",
    ),
    "fr": LanguagePack(
        subjects=("le conseil municipal", "le nouveau gouvernement", "une entreprise locale",
                  "l'\u00e9quipe de recherche", "le club de football", "notre journaliste",
                  "l'h\u00f4pital r\u00e9gional", "l'universit\u00e9", "le minist\u00e8re",
                  "un groupe d'habitants", "le mus\u00e9e", "la banque nationale",
                  "le service m\u00e9t\u00e9orologique", "la soci\u00e9t\u00e9 des transports",
                  "le conseil scolaire", "le festival du film", "l'orchestre", "la jeune entreprise",
                  "la police", "le syndicat des agriculteurs", "la biblioth\u00e8que municipale",
                  "la compagnie ferroviaire", "l'autorit\u00e9 portuaire",
                  "le fournisseur d'\u00e9nergie", "la coop\u00e9rative de logement"),
        verbs=("annonce", "pr\u00e9sente", "critique", "approuve", "rejette", "examine", "reporte",
               "salue", "publie", "d\u00e9fend", "remet en question", "soutient", "\u00e9tudie",
               "termine", "lance", "annule", "d\u00e9crit", "explique", "\u00e9largit", "finance"),
        objects=("un nouveau projet", "le budget", "la proposition", "plusieurs chantiers",
                 "les r\u00e9sultats", "un long rapport", "la d\u00e9cision finale",
                 "de nouvelles r\u00e8gles", "le vieux pont", "la f\u00eate annuelle",
                 "la hausse des prix", "la premi\u00e8re saison", "un d\u00e9bat public",
                 "l'approvisionnement en eau", "le march\u00e9 local", "la r\u00e9forme fiscale",
                 "le nouveau stade", "les r\u00e9sultats des \u00e9lections", "le r\u00e9seau de bus",
                 "la r\u00e9colte", "une \u00e9tude d\u00e9taill\u00e9e", "l'exposition", "la r\u00e9novation",
                 "les pistes cyclables", "les horaires d'ouverture"),
        adjectives=("important", "controvers\u00e9", "inhabituel", "co\u00fbteux", "r\u00e9ussi",
                    "difficile", "surprenant", "populaire", "n\u00e9cessaire", "ambitieux", "modeste",
                    "remarquable", "incertain", "prometteur", "historique"),
        places=("dans le centre-ville", "pr\u00e8s de la rivi\u00e8re", "\u00e0 la mairie",
                "dans le quartier nord", "lundi soir", "pendant l'\u00e9t\u00e9",
                "apr\u00e8s une longue r\u00e9union", "en fin de semaine", "devant la gare",
                "dans toute la r\u00e9gion", "avant les vacances", "dans un petit village",
                "sur le port", "sur la place principale", "\u00e0 huis clos"),
        connectors=("Cependant", "Entre-temps", "De plus", "D'un autre c\u00f4t\u00e9", "L'ann\u00e9e derni\u00e8re",
                    "Pour cette raison", "N\u00e9anmoins", "En m\u00eame temps", "Curieusement",
                    "Comme pr\u00e9vu"),
        names=("Marie Dubois", "Lucas Martin", "Camille Bernard", "Hugo Petit", "L\u00e9a Moreau",
               "Louis Laurent", "Chlo\u00e9 Lefebvre", "Nathan Roux"),
        sentence_templates=(
            "{S} {V} {O} {P}.",
            "{C}, {s} {V} {O} {P}.",
            "Selon {N}, {o} {P} est {A} et le restera.",
            "Beaucoup de gens {P} pensent que {o} est {A}, mais {s} le conteste.",
            "{S} {V} {O} {P}, et {s2} {V2} {O2}.",
            "Il est {A} que {s} {V} {O} {P}.",
            "En {Y}, {s} {V} {O} pour la premi\u00e8re fois.",
            "\u00ab C'est vraiment {A} pour {o} \u00bb, a d\u00e9clar\u00e9 {N} en {Y}.",
            "Environ {D} pour cent des habitants {P} jugent cette d\u00e9cision {A}.",
            "{N} a expliqu\u00e9 pourquoi {s} {V} {O} {P}.",
        ),
        title_templates=("{S} {V} {O}", "Pourquoi la situation est {A}",
                         "{O} : ce qu'il faut savoir", "{N} \u00e0 propos de {o} {P}"),
        nav_labels=("Accueil", "Actualit\u00e9s", "Politique", "\u00c9conomie", "Sport", "Culture",
                    "Opinions", "Contact"),
        cookie_text=("Nous utilisons des cookies pour am\u00e9liorer votre exp\u00e9rience sur {site}. "
                     "En poursuivant votre navigation, vous acceptez l'utilisation des cookies."),
        cookie_buttons=("Tout accepter", "Param\u00e8tres"),
        footer_lines=("\u00a9 {year} {site}. Tous droits r\u00e9serv\u00e9s.",
                      "Mentions l\u00e9gales \u00b7 Politique de confidentialit\u00e9 \u00b7 Conditions "
                      "d'utilisation \u00b7 Publicit\u00e9",
                      "Abonnez-vous \u00e0 la lettre d'information de {site} pour ne rien manquer.",
                      "{site} \u00c9ditions SA, {street}"),
        sidebar_heading="Les plus lus sur {site}",
        share_text="Partager cet article sur les r\u00e9seaux sociaux",
        byline="Par {name} | {date}",
        months=("janvier", "f\u00e9vrier", "mars", "avril", "mai", "juin", "juillet", "ao\u00fbt",
                "septembre", "octobre", "novembre", "d\u00e9cembre"),
        section_slug="actualit\u00e9s",
    ),
    "es": LanguagePack(
        subjects=("el ayuntamiento", "el nuevo gobierno", "una empresa local",
                  "el equipo de investigaci\u00f3n", "el club de f\u00fatbol", "nuestra periodista",
                  "el hospital regional", "la universidad", "el ministerio", "un grupo de vecinos",
                  "el museo", "el banco nacional", "el servicio meteorol\u00f3gico",
                  "la empresa de transportes", "el consejo escolar", "el festival de cine",
                  "la orquesta", "la nueva empresa", "la polic\u00eda", "el sindicato de agricultores",
                  "la biblioteca municipal", "la compa\u00f1\u00eda ferroviaria", "la autoridad portuaria",
                  "la compa\u00f1\u00eda el\u00e9ctrica", "la cooperativa de vivienda"),
        verbs=("anuncia", "presenta", "critica", "aprueba", "rechaza", "debate", "aplaza", "celebra",
               "publica", "defiende", "cuestiona", "apoya", "revisa", "termina", "lanza", "cancela",
               "describe", "explica", "ampl\u00eda", "financia"),
        objects=("un nuevo plan", "el presupuesto", "la propuesta", "varios proyectos",
                 "los resultados", "un largo informe", "la decisi\u00f3n final", "nuevas normas",
                 "el viejo puente", "la fiesta anual", "la subida de precios", "la primera temporada",
                 "un debate p\u00fablico", "el suministro de agua", "el mercado local",
                 "la reforma fiscal", "el nuevo estadio", "los resultados electorales",
                 "la red de autobuses", "la cosecha", "un estudio detallado", "la exposici\u00f3n",
                 "la renovaci\u00f3n", "los carriles bici", "el horario de apertura"),
        adjectives=("importante", "pol\u00e9mico", "inusual", "caro", "exitoso", "dif\u00edcil",
                    "sorprendente", "popular", "necesario", "ambicioso", "modesto", "notable",
                    "incierto", "prometedor", "hist\u00f3rico"),
        places=("en el centro urbano", "cerca del r\u00edo", "en el ayuntamiento",
                "en el barrio norte", "el lunes pasado", "durante el verano",
                "tras una larga reuni\u00f3n", "el fin de semana", "frente a la estaci\u00f3n",
                "en toda la regi\u00f3n", "antes de las vacaciones", "en un peque\u00f1o pueblo",
                "en el puerto", "en la plaza mayor", "a puerta cerrada"),
        connectors=("Sin embargo", "Mientras tanto", "Adem\u00e1s", "Por otro lado", "El a\u00f1o pasado",
                    "Por esta raz\u00f3n", "No obstante", "Al mismo tiempo", "Sorprendentemente",
                    "Como se esperaba"),
        names=("Luc\u00eda Garc\u00eda", "Pablo Fern\u00e1ndez", "Mar\u00eda L\u00f3pez", "Javier Mart\u00ednez",
               "Carmen S\u00e1nchez", "Diego Romero", "Elena Torres", "Sergio Navarro"),
        sentence_templates=(
            "{S} {V} {O} {P}.",
            "{C}, {s} {V} {O} {P}.",
            "Seg\u00fan {N}, {o} {P} es {A} y no cambiar\u00e1 pronto.",
            "Muchas personas {P} creen que {o} es {A}, pero {s} no est\u00e1 de acuerdo.",
            "{S} {V} {O} {P}, y {s2} {V2} {O2}.",
            "Es {A} que {s} {V} {O} {P}.",
            "En {Y}, {s} {V} {O} por primera vez.",
            "\u00abEs realmente {A} para {o}\u00bb, dijo {N} en {Y}.",
            "Alrededor del {D} por ciento de vecinos {P} considera esta decisi\u00f3n {A}.",
            "{N} explic\u00f3 por qu\u00e9 {s} {V} {O} {P}.",
        ),
        title_templates=("{S} {V} {O}", "Por qu\u00e9 la situaci\u00f3n es {A}",
                         "{O}: lo que hay que saber", "{N} sobre {o} {P}"),
        nav_labels=("Portada", "Noticias", "Pol\u00edtica", "Econom\u00eda", "Deportes", "Cultura",
                    "Opini\u00f3n", "Contacto"),
        cookie_text=("Utilizamos cookies para mejorar su experiencia en {site}. Si contin\u00faa "
                     "navegando, consideramos que acepta su uso."),
        cookie_buttons=("Aceptar todas", "Configuraci\u00f3n"),
        footer_lines=("\u00a9 {year} {site}. Todos los derechos reservados.",
                      "Aviso legal \u00b7 Pol\u00edtica de privacidad \u00b7 Condiciones de uso \u00b7 Publicidad",
                      "Suscr\u00edbase al bolet\u00edn de {site} y no se pierda ninguna noticia.",
                      "{site} Ediciones S.L., {street}"),
        sidebar_heading="Lo m\u00e1s le\u00eddo en {site}",
        share_text="Compartir este art\u00edculo en las redes sociales",
        byline="Por {name} | {date}",
        months=("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
                "septiembre", "octubre", "noviembre", "diciembre"),
        section_slug="noticias",
    ),
}


# ---------------------------------------------------------------------------------------------
# Sites: host, language, scheme and URL style (which URL variants make sense depends on it).

@dataclass(frozen=True)
class Site:
    name: str
    host: str
    lang: str
    scheme: str       # scheme of the canonical URL: 'https' or 'http'
    url_style: str    # 'dated' | 'html' | 'unicode' | 'query' | 'slash' | 'section'
    street: str
    section: str = ""  # first URL path segment of every page ('section' style only)


SITES: tuple[Site, ...] = (
    Site("The Harbour Times", "www.harbourtimes.co.uk", "en", "https", "dated", "12 Quay Street, Bristol"),
    Site("Nordstadt Kurier", "www.nordstadt-kurier.de", "de", "https", "html", "Hafenstra\u00dfe 4, 20457 Hamburg"),
    Site("Le Journal du Lac", "www.journal-du-lac.fr", "fr", "https", "unicode", "8 quai du Mont-Blanc, 74000 Annecy"),
    Site("Diario del Sur", "www.diariodelsur.es", "es", "http", "query", "Calle Larios 21, 29005 M\u00e1laga"),
    Site("Riverside Weekly", "riversideweekly.com", "en", "https", "slash", "400 River Road, Portland"),
    Site("Alpenblick Zeitung", "www.alpenblick-zeitung.at", "de", "http", "query", "Maria-Theresien-Stra\u00dfe 7, 6020 Innsbruck"),
    Site("Ouest Matin", "ouest-matin.fr", "fr", "https", "slash", "3 rue de la Marne, 44000 Nantes"),
    Site("El Faro Digital", "www.elfarodigital.es", "es", "https", "html", "Avenida del Puerto 15, 46023 Valencia"),
    Site("Metro Chronicle", "news.metrochronicle.com", "en", "https", "query", "88 Market Street, Leeds"),
    Site("Rheintal Bote", "www.rheintal-bote.de", "de", "https", "dated", "Rheinallee 30, 55116 Mainz"),
    Site("La Gazette de Provence", "www.gazette-provence.fr", "fr", "http", "html", "22 cours Mirabeau, 13100 Aix-en-Provence"),
    Site("Prairie Post", "www.prairiepost.com", "en", "https", "slash", "1200 Main Avenue, Fargo"),
)

# Sites of the labelled pages (English): math pages only on the first ``math_domains`` math sites,
# each under one URL section (a URL prefix a DeepSeekMath-style loop can mark as math).
MATH_SITES: tuple[Site, ...] = (
    Site("Proof Corner", "www.proofcorner.org", "en", "https", "section", "1 College Lane, Cambridge",
         "questions"),
    Site("Calculus Notes", "calculus-notes.net", "en", "https", "section", "77 Euler Street, Boston",
         "notes"),
    Site("Number Theory Digest", "www.numbertheorydigest.org", "en", "https", "section",
         "5 Gauss Road, Durham", "articles"),
    Site("Algebra Hub", "algebrahub.io", "en", "https", "section", "9 Noether Way, Oxford", "threads"),
)
CODE_SITES: tuple[Site, ...] = (
    Site("Byte Notes", "bytenotes.dev", "en", "https", "section", "21 Kernel Street, Austin", "snippets"),
    Site("Loop and Lambda", "www.loopandlambda.com", "en", "https", "section", "3 Compiler Row, Dublin",
         "tutorials"),
)
SPAM_SITES: tuple[Site, ...] = (
    Site("Best Deals Online", "best-deals-online.biz", "en", "http", "section", "PO Box 17, Road Town",
         "offers"),
    Site("Free Bonus Hub", "www.freebonushub.net", "en", "https", "section", "PO Box 99, Belize City",
         "win"),
    Site("Replica Outlet", "replica-outlet.info", "en", "http", "section", "PO Box 5, Victoria", "shop"),
)

# URL variant kinds generated for re-crawled pages; every one must normalise to the canonical key.
URL_VARIANT_KINDS = ("scheme", "host_case", "default_port", "trailing_slash", "fragment",
                     "tracking_params", "param_order", "percent_encoding", "combined")

# Records that are not documents, with the ingest skip reason each must be counted under.
NON_DOCUMENT_KINDS: dict[str, str] = {
    "warcinfo": "non_response", "request": "non_response", "metadata": "non_response",
    "http_404": "http_status", "redirect": "http_status",
    "image": "non_html", "stylesheet": "non_html",
}

# A valid 1x1 transparent PNG (the bytes of a real image response).
_PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63600000000200015e2d2a2a0000000049454e44ae426082")


# Target Jaccard ranges (word 5-gram shingles of the article text) of the three pair kinds.
PAIR_JACCARD: dict[str, tuple[float, float]] = {"near_high": (0.91, 0.98), "near_mid": (0.62, 0.88),
                                                "far": (0.05, 0.45)}
MAX_NON_NATURAL_SHARE = 0.4  # labelled + duplicate + URL-variant slots; natural pages >= 60 %


@dataclass(frozen=True)
class SyntheticCrawlConfig:
    """Shape of the generated crawl. ``pages_per_file`` counts HTML page responses (originals,
    exact duplicates and URL variants) per WARC file; non-document records come on top."""
    seed: int = 0
    num_files: int = 4
    pages_per_file: int = 250
    num_sites: int = 10                 # first ``num_sites`` of ``SITES`` (1..12)
    exact_dup_rate: float = 0.05        # share of page slots that copy another page's bytes
    url_variant_rate: float = 0.10      # share of page slots that re-crawl a page under a URL variant
    request_record_rate: float = 0.05   # share of pages preceded by their HTTP request record
    non_document_records: tuple[str, ...] = ("request", "metadata", "http_404", "redirect",
                                             "image", "stylesheet")  # per file, besides warcinfo
    paragraphs: tuple[int, int] = (3, 7)            # min, max paragraphs per article
    sentences_per_paragraph: tuple[int, int] = (3, 6)
    legacy_charset_rate: float = 0.15   # share of pages served as windows-1252 instead of UTF-8
    # Labelled pages, per page slot of a file (count per file = round(rate * pages_per_file)).
    # A pair rate counts pairs: each pair puts one page into this file and one into the next.
    near_dup_high_rate: float = 0.015   # near-duplicate pairs at Jaccard >= 0.9
    near_dup_mid_rate: float = 0.01     # near-duplicate pairs at Jaccard 0.6-0.9
    far_pair_rate: float = 0.015        # pairs sharing one text block, Jaccard <= 0.5
    spam_rate: float = 0.02             # spam / low-quality pages (SPAM_GENERATORS kinds in turn)
    pii_rate: float = 0.02              # pages with planted PII and look-alikes
    code_rate: float = 0.01             # code pages (code sites)
    math_rate: float = 0.02             # math pages (math sites)
    boilerplate_rate: float = 0.05      # pages with shared cross-site boilerplate sentences
    contamination_rate: float = 0.005   # pages embedding an evaluation item verbatim
    math_domains: int = 3               # first ``math_domains`` of MATH_SITES
    boilerplate_pool: int = 12          # distinct shared boilerplate sentences
    eval_pool: int = 50                 # contaminated pages use eval_items(seed, eval_pool)

    def __post_init__(self):
        if not 1 <= self.num_sites <= len(SITES):
            raise ValueError(f"num_sites must be in 1..{len(SITES)}, got {self.num_sites}")
        if self.exact_dup_rate + self.url_variant_rate >= 0.9:
            raise ValueError("exact_dup_rate + url_variant_rate must stay below 0.9")
        unknown = set(self.non_document_records) - set(NON_DOCUMENT_KINDS)
        if unknown:
            raise ValueError(f"unknown non_document_records {sorted(unknown)}; "
                             f"choose from {sorted(NON_DOCUMENT_KINDS)}")
        if any(rate < 0 for rate in self.labelled_rates().values()):
            raise ValueError(f"labelled page rates must be >= 0, got {self.labelled_rates()}")
        non_natural = self.labelled_page_share() + self.exact_dup_rate + self.url_variant_rate
        if non_natural > MAX_NON_NATURAL_SHARE:
            raise ValueError(
                f"labelled pages ({self.labelled_page_share():.3f} of the slots) plus duplicates and URL "
                f"variants make {non_natural:.3f} > {MAX_NON_NATURAL_SHARE} of the crawl; lower the "
                "*_rate fields so natural pages stay at least 60 %")
        if not 1 <= self.math_domains <= len(MATH_SITES):
            raise ValueError(f"math_domains must be in 1..{len(MATH_SITES)}, got {self.math_domains}")
        if self.boilerplate_pool < 1 or self.eval_pool < 1:
            raise ValueError("boilerplate_pool and eval_pool must be >= 1")

    def labelled_rates(self) -> dict[str, float]:
        """Rate per page slot of each labelled role kind (pair kinds: pairs per slot)."""
        return {"near_high": self.near_dup_high_rate, "near_mid": self.near_dup_mid_rate,
                "far": self.far_pair_rate, "spam": self.spam_rate, "pii": self.pii_rate,
                "code": self.code_rate, "math": self.math_rate, "boilerplate": self.boilerplate_rate,
                "contaminated": self.contamination_rate}

    def labelled_page_share(self) -> float:
        """Share of page slots holding labelled pages (a pair puts two pages into the crawl)."""
        return sum(rate * (2 if kind in PAIR_JACCARD else 1) for kind, rate in self.labelled_rates().items())

    def labelled_counts(self) -> dict[str, int]:
        """Labelled pages per file by role kind (pair kinds: pairs whose first page is in the file)."""
        return {kind: round(rate * self.pages_per_file) for kind, rate in self.labelled_rates().items()}


# One block of an article body: ('p', the sentences of a paragraph) or ('code', the lines of a
# <pre><code> block).
Block = tuple[str, list[str]]

# Ground-truth label columns and their values for records without that label (no None in a column).
LABEL_DEFAULTS: dict[str, object] = {
    "label": "",              # natural | near_dup | far_pair | spam:<kind> | pii | code | math |
                              # boilerplate | contaminated ('' for non-document records)
    "pair_id": -1,            # near_dup / far_pair: id shared by the two pages of a pair
    "pair_member": -1,        # 0 = first page of the pair (file f), 1 = second (file f+1)
    "jaccard": -1.0,          # measured word-5-gram Jaccard of the pair's article texts
    "pii_items": "[]",        # JSON [[type, planted string], ...] (type: labelled_corpus.PII_GENERATORS)
    "lookalikes": "[]",       # JSON [[kind, string], ...] that look like PII but are not
    "eval_item": -1,          # contaminated: index into labelled_corpus.eval_items(seed, eval_pool)
    "boilerplate_items": "[]",  # JSON [[shared sentence index, text as planted, edited?], ...]
}


def page_labels(label: str, **values) -> dict:
    """Label columns of one page: ``LABEL_DEFAULTS`` with ``label`` and ``values`` set."""
    unknown = set(values) - set(LABEL_DEFAULTS)
    if unknown:
        raise KeyError(f"unknown label columns {sorted(unknown)}")
    return {**LABEL_DEFAULTS, "label": label, **values}


@dataclass
class Page:
    """One generated page: its canonical URL, HTML, what is article vs boilerplate, and labels."""
    page_id: int
    site: Site
    url: str                      # canonical URL
    title: str
    article_sentences: list[str]  # every sentence (code: non-empty line) of the article body, in order
    boilerplate_lines: list[str]  # nav, cookie banner, sidebar, footer strings shown on the page
    html: str
    charset: str                  # 'utf-8' | 'windows-1252-header' | 'windows-1252-meta' | 'windows-1252-none'
    paragraphs: list[list[str]] = field(default_factory=list)  # sentences of each 'p' block
    blocks: list[Block] = field(default_factory=list)
    byline: str = ""
    labels: dict = field(default_factory=lambda: page_labels("natural"))

    @property
    def label(self) -> str:
        return self.labels["label"]

    def article_text(self) -> str:
        """The article as main-text extraction gives it back (title, byline, blocks)."""
        return article_text(self.title, self.byline, self.blocks)


@dataclass
class PageContent:
    """What a page role puts into the page shell: site, headline, date, byline, body, labels."""
    site: Site
    title: str
    date: tuple[int, int, int, str]  # year, month, day, date as written in the site's language
    byline: str                      # '' for none
    blocks: list[Block]
    labels: dict


def _rng(config: SyntheticCrawlConfig, *parts) -> random.Random:
    """A generator seeded from (seed, *parts): independent of generation order."""
    return random.Random("/".join(str(p) for p in (config.seed, *parts)))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _slugify(text: str, max_words: int = 6) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = "".join(c if c.isalnum() else " " for c in ascii_text.lower()).split()
    return "-".join(words[:max_words]) or "page"


# --------------------------------------------------------------------------------- page parts

class Deck:
    """Deals the items of a sequence in a shuffled order and reshuffles once all were dealt: an
    article repeats no sentence template or place before it used every other one (so its text
    keeps few repeated word 5-grams, as Gopher's repetition rules expect of real prose)."""

    def __init__(self, rng: random.Random, items):
        self.rng, self.items, self.queue = rng, list(items), []

    def draw(self):
        if not self.queue:
            self.queue = list(self.items)
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def make_sentence(rng: random.Random, pack: LanguagePack, templates: Deck | None = None,
                  places: Deck | None = None) -> str:
    """One article sentence filled from the language pack; template and place come from the
    article's decks when given, else are drawn independently."""
    s, s2 = rng.sample(pack.subjects, 2)
    o, o2 = rng.sample(pack.objects, 2)
    slots = {"s": s, "S": _cap(s), "s2": s2, "o": o, "O": o, "O2": o2,
             "V": rng.choice(pack.verbs), "V2": rng.choice(pack.verbs),
             "A": rng.choice(pack.adjectives), "P": places.draw() if places else rng.choice(pack.places),
             "C": rng.choice(pack.connectors), "N": rng.choice(pack.names),
             "Y": rng.randint(1990, 2024), "D": rng.randint(5, 95)}
    template = templates.draw() if templates else rng.choice(pack.sentence_templates)
    return _cap(template.format(**slots))


def article_sentences(rng: random.Random, pack: LanguagePack) -> labelled_corpus.SentenceFn:
    """A sentence source for one article: ``make_sentence`` with the article's own decks."""
    templates, places = Deck(rng, pack.sentence_templates), Deck(rng, pack.places)
    return lambda r: make_sentence(r, pack, templates, places)


def make_title(rng: random.Random, pack: LanguagePack) -> str:
    s = rng.choice(pack.subjects)
    o = rng.choice(pack.objects)
    return _cap(rng.choice(pack.title_templates).format(
        S=_cap(s), V=rng.choice(pack.verbs), O=_cap(o), o=o, A=rng.choice(pack.adjectives),
        N=rng.choice(pack.names), P=rng.choice(pack.places)))


def make_article(rng: random.Random, pack: LanguagePack, config: SyntheticCrawlConfig
                 ) -> tuple[str, list[list[str]]]:
    """(title, paragraphs as lists of sentences)."""
    title = make_title(rng, pack)
    sentence = article_sentences(rng, pack)
    paragraphs = [[sentence(rng) for _ in range(rng.randint(*config.sentences_per_paragraph))]
                  for _ in range(rng.randint(*config.paragraphs))]
    return title, paragraphs


def make_date(rng: random.Random, pack: LanguagePack) -> tuple[int, int, int, str]:
    year, month, day = rng.randint(2019, 2024), rng.randint(1, 12), rng.randint(1, 28)
    return year, month, day, f"{day} {pack.months[month - 1]} {year}"


def make_nav(site: Site, pack: LanguagePack) -> tuple[str, list[str]]:
    """Site navigation menu: (html, visible strings)."""
    items = "".join(f'<li><a href="/{_slugify(label)}/">{html.escape(label)}</a></li>'
                    for label in pack.nav_labels)
    markup = (f'<header class="site-header"><a class="logo" href="/">{html.escape(site.name)}</a>'
              f'<nav class="main-nav" role="navigation"><ul>{items}</ul></nav></header>')
    return markup, [site.name, *pack.nav_labels]


def make_cookie_banner(site: Site, pack: LanguagePack) -> tuple[str, list[str]]:
    text = pack.cookie_text.format(site=site.name)
    accept, settings = pack.cookie_buttons
    markup = (f'<div id="cookie-banner" class="cookie-consent cookie-notice"><p>{html.escape(text)}</p>'
              f'<button class="accept">{html.escape(accept)}</button>'
              f'<button class="settings">{html.escape(settings)}</button></div>')
    return markup, [text, accept, settings]


def make_sidebar(rng: random.Random, site: Site, pack: LanguagePack, page_title: str
                 ) -> tuple[str, list[str]]:
    """'Most read' box with four headlines of other (fictitious) pages of the site, all different
    from ``page_title`` (so boilerplate and article never share a string)."""
    heading = pack.sidebar_heading.format(site=site.name)
    titles: list[str] = []
    while len(titles) < 4:
        title = make_title(rng, pack)
        if title != page_title and title not in titles:
            titles.append(title)
    items = "".join(f'<li><a href="/{pack.section_slug}/{_slugify(t)}">{html.escape(t)}</a></li>'
                    for t in titles)
    markup = (f'<aside class="sidebar widget-popular"><h3>{html.escape(heading)}</h3>'
              f'<ol>{items}</ol></aside>')
    return markup, [heading, *titles]


def make_footer(site: Site, pack: LanguagePack, year: int) -> tuple[str, list[str]]:
    lines = [line.format(site=site.name, year=year, street=site.street) for line in pack.footer_lines]
    markup = ('<footer class="site-footer">' + "".join(f"<p>{html.escape(line)}</p>" for line in lines)
              + "</footer>")
    return markup, lines


def make_share_bar(pack: LanguagePack) -> tuple[str, list[str]]:
    markup = (f'<div class="share-bar social"><span>{html.escape(pack.share_text)}</span>'
              '<a href="#">Facebook</a> <a href="#">X</a> <a href="#">WhatsApp</a></div>')
    return markup, [pack.share_text]


def block_text(block: Block) -> str:
    """A block's text as extracted: a paragraph's sentences joined by spaces, code lines by newlines."""
    tag, items = block
    return "\n".join(items) if tag == "code" else " ".join(items)


def article_text(title: str, byline: str, blocks: list[Block]) -> str:
    """Title, byline (if any) and blocks, one per line: the main text of the article."""
    return "\n".join([title, *([byline] if byline else []), *(block_text(b) for b in blocks)])


def make_blocks_html(title: str, byline: str, blocks: list[Block]) -> str:
    """The <article>: headline, byline (omitted when ''), <p> per paragraph, <pre><code> per code block."""
    body = "".join(f"<pre><code>{html.escape(block_text(b))}</code></pre>" if b[0] == "code"
                   else f"<p>{html.escape(block_text(b))}</p>" for b in blocks)
    byline_html = f'<p class="byline">{html.escape(byline)}</p>' if byline else ""
    return f'<article class="post"><h1>{html.escape(title)}</h1>{byline_html}{body}</article>'


def make_article_html(title: str, byline: str, paragraphs: list[list[str]]) -> str:
    return make_blocks_html(title, byline, [("p", p) for p in paragraphs])


def make_html_document(site: Site, lang: str, title: str, head_extra: str, parts: list[str]) -> str:
    """The page shell: head with title, analytics script and style; ``parts`` in body order."""
    return ("<!DOCTYPE html>\n"
            f'<html lang="{lang}"><head>{head_extra}<title>{html.escape(title)} | {html.escape(site.name)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<style>body{font-family:sans-serif}.cookie-consent{position:fixed;bottom:0}</style>'
            f'<script>window.dataLayer=[];dataLayer.push({{"site":"{site.host}"}});</script>'
            "</head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def canonical_url(site: Site, pack: LanguagePack, page_id: int, title: str, date: tuple) -> str:
    """The page's canonical URL, in the site's URL style. Contains page_id, so pages never collide."""
    year, month = date[0], date[1]
    slug = f"{_slugify(title)}-{page_id}"
    base = f"{site.scheme}://{site.host}"
    if site.url_style == "dated":
        return f"{base}/{pack.section_slug}/{year}/{month:02d}/{slug}"
    if site.url_style == "html":
        return f"{base}/{pack.section_slug}/{slug}.html"
    if site.url_style == "unicode":  # non-ASCII section name, percent-encoded as UTF-8
        return f"{base}/{quote(pack.section_slug)}/{slug}"
    if site.url_style == "query":
        return f"{base}/index.php?id={page_id}&section={pack.section_slug}"
    if site.url_style == "slash":
        return f"{base}/{year}/{month:02d}/{slug}/"
    if site.url_style == "section":  # one fixed first path segment per site
        return f"{base}/{site.section}/{slug}"
    raise ValueError(f"unknown url_style {site.url_style!r}")


# ------------------------------------------------------------------------------ page roles

@dataclass(frozen=True)
class Role:
    """What an original page slot holds. ``kind``: 'natural' or a key of ``labelled_rates()``.
    ``index``: the pair id (pair kinds), the index into ``SPAM_KINDS`` (spam), the eval item
    (contaminated), else the page's ordinal within its kind. ``member``: 0 / 1 for the first /
    second page of a pair, else -1."""
    kind: str
    index: int = -1
    member: int = -1


NATURAL = Role("natural")
SPAM_KINDS: tuple[str, ...] = tuple(sorted(labelled_corpus.SPAM_GENERATORS))
# Look-alikes planted on PII pages: all but code snippets (their curly brackets would make a
# C4-style filter drop the PII page before redaction could be measured; code has its own pages).
CRAWL_LOOKALIKE_KINDS = tuple(k for k in labelled_corpus.LOOKALIKE_KINDS if k != "code")
PAIR_LABELS = {"near_high": "near_dup", "near_mid": "near_dup", "far": "far_pair"}


def pair_id_of(config: SyntheticCrawlConfig, kind: str, first_file: int, ordinal: int) -> int:
    """Crawl-wide id of pair ``ordinal`` of pair kind ``kind`` whose first page is in ``first_file``."""
    counts, offset = config.labelled_counts(), 0
    for k in PAIR_JACCARD:
        if k == kind:
            return offset + first_file * counts[k] + ordinal
        offset += config.num_files * counts[k]
    raise ValueError(f"unknown pair kind {kind!r}")


def pair_kind_of(config: SyntheticCrawlConfig, pair_id: int) -> str:
    """The pair kind ('near_high' | 'near_mid' | 'far') of a crawl-wide pair id."""
    counts, offset = config.labelled_counts(), 0
    for k in PAIR_JACCARD:
        offset += config.num_files * counts[k]
        if pair_id < offset:
            return k
    raise ValueError(f"pair id {pair_id} outside the crawl")


def file_role_list(config: SyntheticCrawlConfig, file_index: int) -> list[Role]:
    """The labelled roles of file ``file_index``: the first pages of its own pairs, the second
    pages of the previous file's pairs, then the single-page roles."""
    counts, previous = config.labelled_counts(), (file_index - 1) % config.num_files
    roles: list[Role] = []
    for kind in PAIR_JACCARD:
        roles += [Role(kind, pair_id_of(config, kind, file_index, j), 0) for j in range(counts[kind])]
        roles += [Role(kind, pair_id_of(config, kind, previous, j), 1) for j in range(counts[kind])]
    for kind in ("spam", "pii", "code", "math", "boilerplate", "contaminated"):
        for j in range(counts[kind]):
            ordinal = file_index * counts[kind] + j
            index = {"spam": ordinal % len(SPAM_KINDS), "contaminated": ordinal % config.eval_pool}.get(kind, ordinal)
            roles.append(Role(kind, index))
    return roles


@lru_cache(maxsize=1024)
def file_roles(config: SyntheticCrawlConfig, file_index: int) -> dict[int, Role]:
    """Slot -> role for the labelled original slots of a file (every other original is natural);
    the roles go to a seeded shuffle of the file's original slots."""
    roles = file_role_list(config, file_index)
    originals = [s for s in range(config.pages_per_file) if slot_kind(config, file_index, s) == "original"]
    if len(originals) < len(roles):
        raise ValueError(f"file {file_index} has {len(originals)} original page slots for {len(roles)} "
                         "labelled pages; raise pages_per_file or lower the labelled *_rate fields")
    _rng(config, "roles", file_index).shuffle(originals)
    return dict(zip(originals, roles))


def page_role(config: SyntheticCrawlConfig, page_id: int) -> Role:
    """The role of page ``page_id`` (natural for page ids outside the crawl's original slots)."""
    file_index, slot = divmod(page_id, config.pages_per_file)
    if not 0 <= file_index < config.num_files:
        return NATURAL
    return file_roles(config, file_index).get(slot, NATURAL)


# ---------------------------------------------------------------------------- page contents

def news_sites(config: SyntheticCrawlConfig) -> tuple[Site, ...]:
    return SITES[:config.num_sites]


def _news_header(rng: random.Random, site: Site) -> tuple[str, tuple, str]:
    """(headline, date, byline) of a news article on ``site``."""
    pack = LANGUAGE_PACKS[site.lang]
    title = make_title(rng, pack)
    date = make_date(rng, pack)
    return title, date, pack.byline.format(name=rng.choice(pack.names), date=date[3])


def _paragraph_blocks(rng: random.Random, sentences: list[str], low: int = 3, high: int = 5) -> list[Block]:
    """Sentences grouped in order into paragraphs of ``low..high`` sentences."""
    blocks, i = [], 0
    while i < len(sentences):
        n = rng.randint(low, high)
        blocks.append(("p", sentences[i:i + n]))
        i += n
    return blocks


def _line_blocks(text: str) -> list[Block]:
    """One paragraph per non-empty line of ``text``."""
    return [("p", [line]) for line in text.split("\n") if line.strip()]


def natural_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A news article of one of the first ``num_sites`` sites, in the site's language."""
    return natural_content_on(config, SITES[rng.randrange(config.num_sites)], rng)


def natural_content_on(config: SyntheticCrawlConfig, site: Site, rng: random.Random) -> PageContent:
    """A news article of ``site``, in the site's language."""
    pack = LANGUAGE_PACKS[site.lang]
    title, paragraphs = make_article(rng, pack, config)
    date = make_date(rng, pack)
    byline = pack.byline.format(name=rng.choice(pack.names), date=date[3])
    return PageContent(site, title, date, byline, [("p", p) for p in paragraphs], page_labels("natural"))


@lru_cache(maxsize=64)
def pack_vocabulary(lang: str) -> tuple[str, ...]:
    """The content words of a language pack (near-duplicate edits draw from them)."""
    pack = LANGUAGE_PACKS[lang]
    phrases = pack.subjects + pack.verbs + pack.objects + pack.adjectives + pack.places
    return tuple(sorted({w.strip(",.") for phrase in phrases for w in phrase.split() if len(w) > 2}))


@lru_cache(maxsize=64)
def pack_phrase_groups(lang: str) -> tuple[tuple[str, ...], ...]:
    """Interchangeable phrases of a language pack (objects, places, adjectives, verbs, names):
    a near-duplicate edit swaps one for another of its group, so the edited text stays natural."""
    pack = LANGUAGE_PACKS[lang]
    return (pack.objects, pack.places, pack.adjectives, pack.verbs, pack.names)


@lru_cache(maxsize=4096)
def pair_contents(config: SyntheticCrawlConfig, pair_id: int) -> tuple[PageContent, PageContent]:
    """Both pages of a pair: a 20-48 sentence news article on one site and, on another site of the
    same language, an edited re-publication under the same headline (near pairs: phrases swapped,
    sentences rewritten, added or deleted with the site's own sentence generator, so both pages
    read as natural text) or a new article that reuses one block of it (far pairs). Labels carry the Jaccard measured on the article texts."""
    kind = pair_kind_of(config, pair_id)
    rng = _rng(config, "pair", pair_id)
    site_a = rng.choice(news_sites(config))
    same_language = [s for s in news_sites(config) if s.lang == site_a.lang and s != site_a]
    site_b = rng.choice(same_language) if same_language else site_a
    pack = LANGUAGE_PACKS[site_a.lang]
    title, date, byline = _news_header(rng, site_a)
    sentence = article_sentences(rng, pack)
    blocks_a: list[Block] = [("p", [sentence(rng) for _ in range(rng.randint(4, 6))])
                             for _ in range(rng.randint(5, 8))]
    body_a = "\n".join(block_text(b) for b in blocks_a)
    target = rng.uniform(*PAIR_JACCARD[kind])
    if kind == "far":
        body_b, _ = labelled_corpus.far_pair(rng, body_a, target, site_a.lang,
                                             sentence=article_sentences(rng, pack))
        title_b, date_b, byline_b = _news_header(rng, site_b)
    else:
        paragraphs_b, _ = labelled_corpus.near_duplicate_sentences(
            rng, [items for _, items in blocks_a], target, article_sentences(rng, pack), pack_phrase_groups(site_a.lang))
        title_b, date_b, byline_b = title, date, byline
        body_b = "\n".join(" ".join(p) for p in paragraphs_b if p)
    blocks_b = _line_blocks(body_b)
    jaccard = labelled_corpus.shingle_jaccard(article_text(title, byline, blocks_a),
                                              article_text(title_b, byline_b, blocks_b))
    label = PAIR_LABELS[kind]
    return (PageContent(site_a, title, date, byline, blocks_a,
                        page_labels(label, pair_id=pair_id, pair_member=0, jaccard=jaccard)),
            PageContent(site_b, title_b, date_b, byline_b, blocks_b,
                        page_labels(label, pair_id=pair_id, pair_member=1, jaccard=jaccard)))


def pair_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    return pair_contents(config, role.index)[role.member]


def spam_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A spam page of kind ``SPAM_KINDS[role.index]`` on a spam site: one paragraph per line."""
    kind = SPAM_KINDS[role.index]
    site = rng.choice(SPAM_SITES)
    title = " ".join(rng.choice(labelled_corpus.SPAM_WORDS) for _ in range(rng.randint(3, 6))).title()
    date = make_date(rng, LANGUAGE_PACKS[site.lang])
    text = labelled_corpus.SPAM_GENERATORS[kind](rng, site.lang)
    return PageContent(site, title, date, "", _line_blocks(text),
                       page_labels(f"spam:{kind.removeprefix('spam_')}"))


PII_PER_PAGE = 2        # planted PII strings (distinct types) per PII page
LOOKALIKES_PER_PAGE = 2  # planted PII look-alikes per PII page


def pii_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A news article of natural length (as ``make_article``) in its site's language with
    ``PII_PER_PAGE`` planted PII strings and ``LOOKALIKES_PER_PAGE`` look-alikes, each in
    parentheses at the end of a natural sentence of the site (a reporter's email, a phone
    number, ...): apart from the planted strings the page reads like the site's other pages."""
    site = rng.choice(news_sites(config))
    pack = LANGUAGE_PACKS[site.lang]
    title, date, byline = _news_header(rng, site)
    sentence = article_sentences(rng, pack)
    n = sum(rng.randint(*config.sentences_per_paragraph) for _ in range(rng.randint(*config.paragraphs)))
    sentences, planted, looks = labelled_corpus.pii_sentences(
        rng, site.lang, PII_PER_PAGE, LOOKALIKES_PER_PAGE, sentence=sentence,
        lookalike_kinds=CRAWL_LOOKALIKE_KINDS, n_sentences=max(1, n - PII_PER_PAGE - LOOKALIKES_PER_PAGE),
        frame=labelled_corpus.parenthetical_frame(sentence))
    return PageContent(site, title, date, byline, _paragraph_blocks(rng, sentences),
                       page_labels("pii", pii_items=json.dumps([list(p) for p in planted]),
                                   lookalikes=json.dumps([list(x) for x in looks])))


CODE_TITLES = ("Python snippet {n}: totals in a loop", "How to build a lookup table in {n} lines of Python",
               "Small helpers for indexed totals, part {n}", "A {n}-step loop that fills a dictionary")
CODE_PROSE = (
    "The functions below walk over the first {n} items and store each result in a dictionary.",
    "We keep the loop simple on purpose, because {n} iterations are enough for this example.",
    "Each helper returns a new dictionary instead of changing its input, which makes testing easier.",
    "Run the snippet with Python 3.{n} or newer; it needs nothing outside the standard library.",
    "If you need more than {n} values, pass a larger n instead of editing the loop.",
    "The hexadecimal constant only shifts every value by a small offset of at most {n} hundred.",
)


def _code_prose(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(CODE_PROSE).format(n=rng.randint(2, 12)) for _ in range(count)]


def code_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A code tutorial on a code site: prose, a <pre><code> block of Python, prose."""
    site = rng.choice(CODE_SITES)
    pack = LANGUAGE_PACKS[site.lang]
    title = rng.choice(CODE_TITLES).format(n=rng.randint(2, 12))
    date = make_date(rng, pack)
    byline = pack.byline.format(name=rng.choice(pack.names), date=date[3])
    code = labelled_corpus.code_page(rng).rstrip("\n").split("\n")
    blocks = [("p", _code_prose(rng, rng.randint(2, 3))), ("code", code), ("p", _code_prose(rng, rng.randint(1, 2)))]
    return PageContent(site, title, date, byline, blocks, page_labels("code"))


MATH_TITLES = ("Solving {a}x + {b} = 0 step by step", "Eigenvalues of a {a} by {a} matrix",
               "The integral of x^{b} from 0 to {a}", "Why every prime p > {a} divides p^{b} - p",
               "A short proof about n^2 = {c}")


def math_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A math page (LaTeX in $...$ mixed with English prose) on one of the math sites."""
    site = rng.choice(MATH_SITES[:config.math_domains])
    pack = LANGUAGE_PACKS[site.lang]
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    title = rng.choice(MATH_TITLES).format(a=a, b=b, c=a * a)
    date = make_date(rng, pack)
    byline = pack.byline.format(name=rng.choice(pack.names), date=date[3])
    text = labelled_corpus.math_page(rng, sentence=article_sentences(rng, pack))
    return PageContent(site, title, date, byline, _line_blocks(text), page_labels("math"))


# Cross-site notices (syndication, newsletter, disclaimer, copyright) in each language; {o} an
# object phrase, {p} a place phrase, {a} an adjective of the site's pack (the packs are parallel,
# so pool entry k is the same notice on every site, in the site's language). Each >= 12 words.
BOILERPLATE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("This report on {o} {p} was prepared with material from the regional news agency and updated later.",
           "Subscribe to our weekly newsletter to receive every update on {o} and other {a} stories from the region.",
           "All information about {o} on this page is provided without guarantee and does not replace legal advice.",
           "Copyright notice: our reports on {o} {p} and all related photographs are protected by law."),
    "de": ("Dieser Bericht \u00fcber {o} {p} entstand mit Material der regionalen Nachrichtenagentur und wurde sp\u00e4ter aktualisiert.",
           "Abonnieren Sie unseren w\u00f6chentlichen Newsletter f\u00fcr alle Neuigkeiten \u00fcber {o} und andere {a} Geschichten aus der Region.",
           "Alle Angaben zu {o} auf dieser Seite erfolgen ohne Gew\u00e4hr und ersetzen keine rechtliche Beratung.",
           "Urheberrecht: unsere Berichte \u00fcber {o} {p} und alle zugeh\u00f6rigen Fotos sind gesetzlich gesch\u00fctzt."),
    "fr": ("Cet article sur {o} {p} a \u00e9t\u00e9 r\u00e9dig\u00e9 avec des informations de l'agence de presse r\u00e9gionale puis mis \u00e0 jour.",
           "Abonnez-vous \u00e0 notre lettre hebdomadaire pour suivre toute l'actualit\u00e9 sur {o} et d'autres sujets de la r\u00e9gion.",
           "Toutes les informations sur {o} de cette page sont fournies sans garantie et ne remplacent pas un conseil juridique.",
           "Droits d'auteur : nos articles sur {o} {p} et toutes les photos associ\u00e9es sont prot\u00e9g\u00e9s par la loi."),
    "es": ("Este informe sobre {o} {p} se elabor\u00f3 con material de la agencia regional de noticias y se actualiz\u00f3 despu\u00e9s.",
           "Suscr\u00edbase a nuestro bolet\u00edn semanal para recibir todas las novedades sobre {o} y otras historias de la regi\u00f3n.",
           "Toda la informaci\u00f3n sobre {o} de esta p\u00e1gina se ofrece sin garant\u00eda y no sustituye un asesoramiento legal.",
           "Derechos de autor: nuestros informes sobre {o} {p} y todas las fotos relacionadas est\u00e1n protegidos por la ley."),
}


@lru_cache(maxsize=64)
def boilerplate_pool(config: SyntheticCrawlConfig) -> tuple[tuple[int, int, int, int], ...]:
    """The ``boilerplate_pool`` shared cross-site notices of this crawl, as distinct
    ``(template, object, place, adjective)`` indices; ``boilerplate_sentence`` writes one in a language."""
    rng, pack = _rng(config, "boilerplate-pool"), LANGUAGE_PACKS["en"]
    specs: list[tuple[int, int, int, int]] = []
    while len(specs) < config.boilerplate_pool:
        spec = (len(specs) % len(BOILERPLATE_TEMPLATES["en"]), rng.randrange(len(pack.objects)),
                rng.randrange(len(pack.places)), rng.randrange(len(pack.adjectives)))
        if spec not in specs:
            specs.append(spec)
    return tuple(specs)


def boilerplate_sentence(spec: tuple[int, int, int, int], lang: str) -> str:
    """Shared notice ``spec`` (an entry of ``boilerplate_pool``) in language ``lang``."""
    template, o, p, a = spec
    pack = LANGUAGE_PACKS[lang]
    return BOILERPLATE_TEMPLATES[lang][template].format(o=pack.objects[o], p=pack.places[p], a=pack.adjectives[a])


def boilerplate_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A natural article with 1-2 shared notices of ``boilerplate_pool`` (in the site's language)
    inserted into its paragraphs; a quarter of them with one word changed to a word of the site's
    pack (``edited``), the rest normalisation-level variants (case, punctuation, spacing)."""
    content = natural_content(config, role, rng)
    pool = boilerplate_pool(config)
    items = []
    for k in rng.sample(range(len(pool)), min(len(pool), rng.randint(1, 2))):
        edited = rng.random() < 0.25
        sentence = boilerplate_sentence(pool[k], content.site.lang)
        text = " ".join(labelled_corpus.boilerplate_variant(
            rng, sentence, edited, vocabulary=pack_vocabulary(content.site.lang)).split())
        paragraph = content.blocks[rng.randrange(len(content.blocks))][1]
        paragraph.insert(rng.randrange(len(paragraph) + 1), text)
        items.append([k, text, edited])
    content.labels = page_labels("boilerplate", boilerplate_items=json.dumps(items))
    return content


@lru_cache(maxsize=64)
def crawl_eval_items(seed: int, n: int) -> tuple[str, ...]:
    return tuple(labelled_corpus.eval_items(seed, n))


def contaminated_content(config: SyntheticCrawlConfig, role: Role, rng: random.Random) -> PageContent:
    """A natural article on an English news site (the evaluation items are English) with
    evaluation item ``role.index`` as a paragraph of its own."""
    content = natural_content(config, role, rng)
    english = [s for s in news_sites(config) if s.lang == "en"]
    if english and content.site.lang != "en":
        content = natural_content_on(config, rng.choice(english), rng)
    item = crawl_eval_items(config.seed, config.eval_pool)[role.index]
    content.blocks.insert(rng.randrange(len(content.blocks) + 1), ("p", [item]))
    content.labels = page_labels("contaminated", eval_item=role.index)
    return content


ROLE_CONTENT = {"natural": natural_content, "near_high": pair_content, "near_mid": pair_content,
                "far": pair_content, "spam": spam_content, "pii": pii_content, "code": code_content,
                "math": math_content, "boilerplate": boilerplate_content,
                "contaminated": contaminated_content}


def assemble_page(config: SyntheticCrawlConfig, page_id: int, rng: random.Random, content: PageContent) -> Page:
    """Put ``content`` into the site's page shell (cookie banner, navigation, sidebar, share bar,
    footer) and pick the page's charset; ``rng`` draws the sidebar and the charset."""
    site, title, date, byline, blocks = content.site, content.title, content.date, content.byline, content.blocks
    pack = LANGUAGE_PACKS[site.lang]
    nav, nav_lines = make_nav(site, pack)
    cookie, cookie_lines = make_cookie_banner(site, pack)
    sidebar, sidebar_lines = make_sidebar(rng, site, pack, title)
    share, share_lines = make_share_bar(pack)
    footer, footer_lines = make_footer(site, pack, date[0])

    charset = "utf-8"
    if rng.random() < config.legacy_charset_rate:
        charset = rng.choice(("windows-1252-header", "windows-1252-meta", "windows-1252-none"))
    head_extra = {"utf-8": '<meta charset="utf-8">',
                  "windows-1252-meta": '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
                  }.get(charset, "")
    main = f'<main id="content">{make_blocks_html(title, byline, blocks)}\n{share}</main>'
    document = make_html_document(site, site.lang, title, head_extra,
                                  [cookie, nav, '<div class="layout">', main, sidebar, "</div>", footer])
    sentences = [line for tag, items in blocks for line in items if tag == "p" or line.strip()]
    return Page(page_id=page_id, site=site, url=canonical_url(site, pack, page_id, title, date),
                title=title, article_sentences=sentences,
                boilerplate_lines=nav_lines + cookie_lines + sidebar_lines + share_lines + footer_lines,
                html=document, charset=charset, paragraphs=[items for tag, items in blocks if tag == "p"],
                blocks=blocks, byline=byline, labels=content.labels)


def render_page(config: SyntheticCrawlConfig, page_id: int) -> Page:
    """Generate page ``page_id`` (natural or labelled, by ``page_role``); a pure function of
    ``(config, page_id)``."""
    rng = _rng(config, "page", page_id)
    role = page_role(config, page_id)
    return assemble_page(config, page_id, rng, ROLE_CONTENT[role.kind](config, role, rng))


def render_natural_page(config: SyntheticCrawlConfig, page_id: int) -> Page:
    """The natural news article of ``page_id`` whatever its slot holds in the crawl: for trusted
    reference texts, which must never contain spam, PII or eval items."""
    rng = _rng(config, "page", page_id)
    return assemble_page(config, page_id, rng, natural_content(config, NATURAL, rng))


def encode_page(page: Page) -> tuple[bytes, str]:
    """(HTTP body bytes, Content-Type header value) for the page's charset choice."""
    if page.charset == "utf-8":
        return page.html.encode("utf-8"), "text/html; charset=UTF-8"
    body = page.html.encode("windows-1252", errors="xmlcharrefreplace")
    # Servers commonly label windows-1252 as ISO-8859-1; browsers (and ingest) treat them alike.
    return body, ("text/html; charset=ISO-8859-1" if page.charset == "windows-1252-header" else "text/html")


# ------------------------------------------------------------------------------- URL variants

def exact_duplicate_url(url: str, rng: random.Random) -> str:
    """Another URL of the same site serving the same bytes (AMP / print mirror): a distinct page key."""
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    if rng.random() < 0.5:
        return f"{scheme}://{host}/amp/{path}"
    return url + ("&" if "?" in url else "?") + "output=print"


def url_variant(url: str, kind: str, rng: random.Random) -> str:
    """A URL that names the same page as ``url`` (see ``URL_VARIANT_KINDS``)."""
    scheme, rest = url.split("://", 1)
    host, slash, path_query = rest.partition("/")
    path_query = slash + path_query
    path, qmark, query = path_query.partition("?")
    if kind == "scheme":
        scheme = "http" if scheme == "https" else "https"
    elif kind == "host_case":
        mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in host)
        host = mixed if mixed != host else host.upper()
    elif kind == "default_port":
        host += ":443" if scheme == "https" else ":80"
    elif kind == "trailing_slash":
        path = path[:-1] if path.endswith("/") and len(path) > 1 else path + "/"
    elif kind == "fragment":
        query += "#" + rng.choice(("comments", "section-2", "top", "share"))
    elif kind == "tracking_params":
        tracking = rng.choice(("utm_source=newsletter&utm_medium=email&utm_campaign=weekly",
                               f"fbclid=IwAR{rng.getrandbits(48):012x}",
                               f"gclid=Cj0K{rng.getrandbits(40):010x}",
                               "utm_source=twitter", f"_ga=2.{rng.getrandbits(24)}.{rng.getrandbits(24)}"))
        query = f"{tracking}&{query}" if query and rng.random() < 0.5 else (
            f"{query}&{tracking}" if query else tracking)
    elif kind == "param_order":
        params = query.split("&") if query else []
        if len(params) < 2:
            return url_variant(url, "tracking_params", rng)
        query = "&".join(reversed(params))
    elif kind == "percent_encoding":
        # encode unreserved '-' as %2D and lower-case existing escapes: same resource per RFC 3986
        path = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), path)
        path = path.replace("-", "%2D", 1) if "-" in path else path.replace(".", "%2E", 1)
    elif kind == "combined":
        # scheme before default_port (the port must be the final scheme's default); fragment last
        order = ("scheme", "host_case", "default_port", "tracking_params", "fragment")
        out = url
        for sub in sorted(rng.sample(order, 3), key=order.index):
            out = url_variant(out, sub, rng)
        return out
    else:
        raise ValueError(f"unknown URL variant kind {kind!r}")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query and not query.startswith("#") else query)


# ----------------------------------------------------------------------------- crawl planning

def slot_kind(config: SyntheticCrawlConfig, file_index: int, slot: int) -> str:
    """'original' | 'exact_dup' | 'url_variant' for page slot ``slot`` of file ``file_index``."""
    u = _rng(config, "slot", file_index, slot).random()
    if u < config.exact_dup_rate:
        return "exact_dup"
    if u < config.exact_dup_rate + config.url_variant_rate:
        return "url_variant"
    return "original"


def slot_page_id(config: SyntheticCrawlConfig, file_index: int, slot: int) -> int:
    """Global page id of an original slot (unique across the crawl)."""
    return file_index * config.pages_per_file + slot


def source_page_id(config: SyntheticCrawlConfig, file_index: int, slot: int) -> int:
    """For a duplicate / variant slot, the page id of a natural original slot anywhere in the
    crawl (labelled pages are never copied, so each labelled document occurs once)."""
    rng = _rng(config, "source", file_index, slot)
    while True:
        f, s = rng.randrange(config.num_files), rng.randrange(config.pages_per_file)
        if slot_kind(config, f, s) == "original" and s not in file_roles(config, f):
            return slot_page_id(config, f, s)


# ---------------------------------------------------------------------------------- writing

class _CountingWriter:
    """Wraps a binary file object and counts bytes written (for record offsets)."""

    def __init__(self, out: BinaryIO):
        self.out, self.position = out, 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.position += len(data)
        return len(data)

    def flush(self):
        self.out.flush()


def _warc_date(config: SyntheticCrawlConfig, file_index: int, record_index: int) -> str:
    base = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=config.seed % 365)
    return (base + timedelta(hours=file_index, seconds=record_index)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_id(config: SyntheticCrawlConfig, file_index: int, record_index: int) -> str:
    digest = hashlib.sha1(f"{config.seed}/{file_index}/{record_index}".encode()).digest()[:16]
    return f"<urn:uuid:{uuid.UUID(bytes=digest, version=4)}>"


def warc_file_name(config: SyntheticCrawlConfig, file_index: int) -> str:
    return f"synthetic-crawl-s{config.seed}-{file_index:05d}.warc.gz"


def write_warc_file(fileobj: BinaryIO, config: SyntheticCrawlConfig, file_index: int) -> list[dict]:
    """Write WARC file ``file_index`` (gzip per record) to ``fileobj``; return one ground-truth row
    per record (columns and types: ``GROUND_TRUTH_SCHEMA``): ``record_index, record_offset``
    (bytes into the file), ``record_type, url, canonical_url, site, lang, kind`` ('original' |
    'exact_dup' | 'url_variant' | a key of ``NON_DOCUMENT_KINDS``), ``variant`` (URL variant kind
    or ''), ``page_id`` (-1 if none), ``is_document``, ``skip_reason`` ('' for documents),
    ``charset``, ``file_index``, and the label columns of ``LABEL_DEFAULTS`` (a duplicate or URL
    variant carries the labels of the natural page it copies)."""
    if not 0 <= file_index < config.num_files:
        raise ValueError(f"file_index {file_index} outside 0..{config.num_files - 1}")
    out = _CountingWriter(fileobj)
    writer = WARCWriter(out, gzip=True)
    rows: list[dict] = []
    plan_rng = _rng(config, "file", file_index)
    extra_at = {}
    for kind in config.non_document_records:
        extra_at.setdefault(plan_rng.randrange(config.pages_per_file), []).append(kind)

    def emit(record, row):
        row.update(record_index=len(rows), record_offset=out.position)
        writer.write_record(record)
        rows.append(row)

    def headers(extra=None):
        index = len(rows)
        h = {"WARC-Record-ID": _record_id(config, file_index, index),
             "WARC-Date": _warc_date(config, file_index, index)}
        h.update(extra or {})
        return h

    def http_response(status: str, content_type: str, body: bytes, extra=()):
        date = _warc_date(config, file_index, len(rows))
        return StatusAndHeaders(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                         ("Date", date), ("Server", "nginx"), *extra], protocol="HTTP/1.1")

    # the module's name before it moved into stages/generators/: kept, so the files keep their bytes
    info = (f"software: deeprecipe.stages.synthetic_crawl\r\nformat: WARC File Format 1.1\r\n"
            f"seed: {config.seed}\r\nfile_index: {file_index}\r\n").encode()
    emit(writer.create_warc_record("", "warcinfo", payload=BytesIO(info), length=len(info),
                                   warc_content_type="application/warc-fields",
                                   warc_headers_dict=headers({"WARC-Filename": warc_file_name(config, file_index)})),
         _ground_row(kind="warcinfo", record_type="warcinfo", file_index=file_index))

    for slot in range(config.pages_per_file):
        for kind in extra_at.get(slot, ()):
            record, row = _non_document_record(writer, kind, config, file_index, slot, headers, http_response)
            emit(record, {**row, "file_index": file_index})
        kind = slot_kind(config, file_index, slot)
        rng = _rng(config, "url", file_index, slot)
        variant = ""
        if kind == "original":
            page = render_page(config, slot_page_id(config, file_index, slot))
            url = canon = page.url
        else:
            page = render_page(config, source_page_id(config, file_index, slot))
            if kind == "exact_dup":
                url = canon = exact_duplicate_url(page.url, rng)
            else:
                choices = [k for k in URL_VARIANT_KINDS if k != "param_order" or "&" in page.url]
                variant = rng.choice(choices)
                url, canon = url_variant(page.url, variant, rng), page.url
        if rng.random() < config.request_record_rate:
            emit(_request_record(writer, url, headers), _ground_row(kind="request", record_type="request",
                                                                    url=url, file_index=file_index))
        body, content_type = encode_page(page)
        record = writer.create_warc_record(url, "response", payload=BytesIO(body), length=len(body),
                                           warc_headers_dict=headers(),
                                           http_headers=http_response("200 OK", content_type, body))
        emit(record, _ground_row(kind=kind, record_type="response", url=url, canonical_url=canon,
                                 site=page.site.host, lang=page.site.lang, variant=variant,
                                 page_id=page.page_id, charset=page.charset, file_index=file_index,
                                 labels=page.labels))
    return rows


def _ground_row(kind: str, record_type: str, url: str = "", canonical_url: str = "", site: str = "",
                lang: str = "", variant: str = "", page_id: int = -1, charset: str = "",
                file_index: int = -1, labels: dict | None = None) -> dict:
    is_document = kind in ("original", "exact_dup", "url_variant")
    return {"record_type": record_type, "url": url, "canonical_url": canonical_url, "site": site,
            "lang": lang, "kind": kind, "variant": variant, "page_id": page_id,
            "is_document": is_document, "skip_reason": "" if is_document else NON_DOCUMENT_KINDS[kind],
            "charset": charset, "file_index": file_index, **(labels or LABEL_DEFAULTS)}


def _request_record(writer: WARCWriter, url: str, headers) -> object:
    path = "/" + url.split("://", 1)[1].partition("/")[2]
    host = url.split("://", 1)[1].partition("/")[0]
    http = StatusAndHeaders(f"GET {path} HTTP/1.1", [("Host", host), ("User-Agent", "deeprecipe-synthetic/1.0"),
                                                     ("Accept", "text/html")], is_http_request=True)
    return writer.create_warc_record(url, "request", warc_headers_dict=headers(), http_headers=http)


def _non_document_record(writer, kind, config, file_index, slot, headers, http_response):
    site = SITES[_rng(config, "extra", file_index, slot, kind).randrange(config.num_sites)]
    base = f"{site.scheme}://{site.host}"
    if kind == "request":
        url = f"{base}/"
        return _request_record(writer, url, headers), _ground_row(kind, "request", url=url)
    if kind == "metadata":
        url = f"{base}/"
        payload = b"fetchTimeMs: 112\r\noutlinks: 24\r\n"
        rec = writer.create_warc_record(url, "metadata", payload=BytesIO(payload), length=len(payload),
                                        warc_content_type="application/warc-fields",
                                        warc_headers_dict=headers())
        return rec, _ground_row(kind, "metadata", url=url)
    if kind == "http_404":
        url, status, ctype = f"{base}/missing-page-{file_index}-{slot}", "404 Not Found", "text/html; charset=UTF-8"
        body, extra = b"<html><body><h1>404 Not Found</h1><p>The page does not exist.</p></body></html>", ()
    elif kind == "redirect":
        url, status, ctype = f"{base}/old/{file_index}-{slot}", "301 Moved Permanently", "text/html"
        body, extra = b"", (("Location", f"{base}/"),)
    elif kind == "image":
        url, status, ctype, body, extra = f"{base}/img/logo-{file_index}.png", "200 OK", "image/png", _PNG_1X1, ()
    elif kind == "stylesheet":
        url, status, ctype = f"{base}/css/site-{file_index}.css", "200 OK", "text/css"
        body, extra = b"body{margin:0;font-family:sans-serif}nav ul{list-style:none}", ()
    else:
        raise ValueError(kind)
    rec = writer.create_warc_record(url, "response", payload=BytesIO(body), length=len(body),
                                    warc_headers_dict=headers(),
                                    http_headers=http_response(status, ctype, body, extra))
    return rec, _ground_row(kind, "response", url=url)


def write_crawl(folder: str, config: SyntheticCrawlConfig) -> list[str]:
    """Write all ``config.num_files`` WARC files into a local folder; return their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(config.num_files):
        path = os.path.join(folder, warc_file_name(config, i))
        with open(path, "wb") as f:
            write_warc_file(f, config, i)
        paths.append(path)
    return paths


GROUND_TRUTH_SCHEMA = pa.schema([
    ("record_type", pa.string()), ("url", pa.string()), ("canonical_url", pa.string()),
    ("site", pa.string()), ("lang", pa.string()), ("kind", pa.string()), ("variant", pa.string()),
    ("page_id", pa.int64()), ("is_document", pa.bool_()), ("skip_reason", pa.string()),
    ("charset", pa.string()), ("file_index", pa.int64()),
    ("label", pa.string()), ("pair_id", pa.int64()), ("pair_member", pa.int64()),
    ("jaccard", pa.float64()), ("pii_items", pa.string()), ("lookalikes", pa.string()),
    ("eval_item", pa.int64()), ("boilerplate_items", pa.string()),
    ("record_index", pa.int64()), ("record_offset", pa.int64()),
])


class _NullSink:
    """A binary sink that only counts bytes (ground truth without keeping the WARC bytes)."""

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self):
        pass


def ground_truth_table(config: SyntheticCrawlConfig) -> pa.Table:
    """Ground-truth rows of every file of the crawl (``GROUND_TRUTH_SCHEMA``), file by file;
    regenerates the pages, so it costs as much as writing the files (not their storage)."""
    rows = [row for i in range(config.num_files) for row in write_warc_file(_NullSink(), config, i)]
    return pa.Table.from_pylist(rows, schema=GROUND_TRUTH_SCHEMA)


def ground_truth(config: SyntheticCrawlConfig):
    """``ground_truth_table`` as a pandas DataFrame, plus ``file_name`` (``warc_file_name``)."""
    frame = ground_truth_table(config).to_pandas()
    return frame.assign(file_name=[warc_file_name(config, i) for i in frame.file_index])
