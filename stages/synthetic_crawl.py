"""A generated web crawl written as a real WARC.gz: the built-in default source.

Every page is a pure function of ``(config.seed, page_id)`` and is assembled from parts (one
function each: article, navigation, cookie banner, sidebar, footer, HTML shell, encoding), so a
later benchmark generator can swap or add parts (near-duplicates, spam, PII). Each WARC file
holds ``pages_per_file`` HTML page responses, of which some are exact duplicates (the same bytes
under another URL of the same site) or URL variants (the same page under a URL that
``url_dedup.normalize_url`` folds to the canonical one), plus records that ingest must skip: a
``warcinfo`` record first, ``request`` and ``metadata`` records, a 404, a 301 redirect, a PNG
image and a CSS stylesheet. Output is byte-identical for the same config (no wall clock, no
random UUIDs: dates and record ids derive from the seed).
"""
from __future__ import annotations

import hashlib
import html
import os
import random
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from io import BytesIO
from typing import BinaryIO
from urllib.parse import quote

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

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
                "at the end of the week", "in front of the station", "across the region",
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
            "According to {N}, {o} {P} is {A} and will not change soon.",
            "Many people {P} think that {o} is {A}, but {s} does not agree.",
            "{S} {V} {O} {P}, and {s2} {V2} {O2}.",
            "It is {A} that {s} {V} {O} {P}.",
            "In {Y}, {s} {V} {O} for the first time.",
            "\u201cThis is really {A} for {o},\u201d said {N}, who has followed the story since {Y}.",
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
            "Nach Angaben von {N} ist die Lage {P} {A} und wird sich nicht so bald \u00e4ndern.",
            "Viele Menschen {P} glauben, dass {o} {A} ist, aber {s} sieht das anders.",
            "{S} {V} {O} {P}, und {s2} {V2} {O2}.",
            "Es ist {A}, dass {s} {O} {P} {V}.",
            "Im Jahr {Y} {V} {s} zum ersten Mal {O}.",
            "\u201eDas ist wirklich {A} f\u00fcr {o}\u201c, sagte {N}, die die Entwicklung seit {Y} verfolgt.",
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
                "apr\u00e8s une longue r\u00e9union", "\u00e0 la fin de la semaine", "devant la gare",
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
            "Selon {N}, {o} {P} est {A} et ne changera pas de sit\u00f4t.",
            "Beaucoup de gens {P} pensent que {o} est {A}, mais {s} n'est pas d'accord.",
            "{S} {V} {O} {P}, et {s2} {V2} {O2}.",
            "Il est {A} que {s} {V} {O} {P}.",
            "En {Y}, {s} {V} {O} pour la premi\u00e8re fois.",
            "\u00ab C'est vraiment {A} pour {o} \u00bb, a d\u00e9clar\u00e9 {N}, qui suit le dossier depuis {Y}.",
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
        places=("en el centro de la ciudad", "cerca del r\u00edo", "en el ayuntamiento",
                "en el barrio norte", "el lunes por la tarde", "durante el verano",
                "tras una larga reuni\u00f3n", "al final de la semana", "frente a la estaci\u00f3n",
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
            "\u00abEs realmente {A} para {o}\u00bb, dijo {N}, que sigue el asunto desde {Y}.",
            "Alrededor del {D} por ciento de los vecinos {P} considera esta decisi\u00f3n {A}.",
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
    url_style: str    # 'dated' | 'html' | 'unicode' | 'query' | 'slash'
    street: str


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

    def __post_init__(self):
        if not 1 <= self.num_sites <= len(SITES):
            raise ValueError(f"num_sites must be in 1..{len(SITES)}, got {self.num_sites}")
        if self.exact_dup_rate + self.url_variant_rate >= 0.9:
            raise ValueError("exact_dup_rate + url_variant_rate must stay below 0.9")
        unknown = set(self.non_document_records) - set(NON_DOCUMENT_KINDS)
        if unknown:
            raise ValueError(f"unknown non_document_records {sorted(unknown)}; "
                             f"choose from {sorted(NON_DOCUMENT_KINDS)}")


@dataclass
class Page:
    """One generated page: its canonical URL, HTML and what is article vs boilerplate."""
    page_id: int
    site: Site
    url: str                      # canonical URL
    title: str
    article_sentences: list[str]  # every sentence of the article body, in order
    boilerplate_lines: list[str]  # nav, cookie banner, sidebar, footer strings shown on the page
    html: str
    charset: str                  # 'utf-8' | 'windows-1252-header' | 'windows-1252-meta' | 'windows-1252-none'
    paragraphs: list[list[str]] = field(default_factory=list)


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

def make_sentence(rng: random.Random, pack: LanguagePack) -> str:
    """One article sentence filled from the language pack."""
    s, s2 = rng.sample(pack.subjects, 2)
    o, o2 = rng.sample(pack.objects, 2)
    slots = {"s": s, "S": _cap(s), "s2": s2, "o": o, "O": o, "O2": o2,
             "V": rng.choice(pack.verbs), "V2": rng.choice(pack.verbs),
             "A": rng.choice(pack.adjectives), "P": rng.choice(pack.places),
             "C": rng.choice(pack.connectors), "N": rng.choice(pack.names),
             "Y": rng.randint(1990, 2024), "D": rng.randint(5, 95)}
    return _cap(rng.choice(pack.sentence_templates).format(**slots))


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
    paragraphs = [[make_sentence(rng, pack) for _ in range(rng.randint(*config.sentences_per_paragraph))]
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


def make_article_html(title: str, byline: str, paragraphs: list[list[str]]) -> str:
    body = "".join(f"<p>{html.escape(' '.join(p))}</p>" for p in paragraphs)
    return (f'<article class="post"><h1>{html.escape(title)}</h1>'
            f'<p class="byline">{html.escape(byline)}</p>{body}</article>')


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
    raise ValueError(f"unknown url_style {site.url_style!r}")


def render_page(config: SyntheticCrawlConfig, page_id: int) -> Page:
    """Generate page ``page_id``; a pure function of (config.seed, page_id) and the text knobs."""
    rng = _rng(config, "page", page_id)
    site = SITES[rng.randrange(config.num_sites)]
    pack = LANGUAGE_PACKS[site.lang]
    title, paragraphs = make_article(rng, pack, config)
    date = make_date(rng, pack)
    byline = pack.byline.format(name=rng.choice(pack.names), date=date[3])
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
    main = f'<main id="content">{make_article_html(title, byline, paragraphs)}\n{share}</main>'
    document = make_html_document(site, site.lang, title, head_extra,
                                  [cookie, nav, '<div class="layout">', main, sidebar, "</div>", footer])
    return Page(page_id=page_id, site=site, url=canonical_url(site, pack, page_id, title, date),
                title=title, article_sentences=[s for p in paragraphs for s in p],
                boilerplate_lines=nav_lines + cookie_lines + sidebar_lines + share_lines + footer_lines,
                html=document, charset=charset, paragraphs=paragraphs)


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
    """For a duplicate / variant slot, the page id of an original slot anywhere in the crawl."""
    rng = _rng(config, "source", file_index, slot)
    while True:
        f, s = rng.randrange(config.num_files), rng.randrange(config.pages_per_file)
        if slot_kind(config, f, s) == "original":
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
    per record: ``record_index, record_offset`` (bytes into the file), ``record_type, url,
    canonical_url, site, lang, kind`` ('original' | 'exact_dup' | 'url_variant' | a key of
    ``NON_DOCUMENT_KINDS``), ``variant`` (URL variant kind or ''), ``page_id`` (-1 if none),
    ``is_document``, ``skip_reason`` ('' for documents), ``charset``."""
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

    info = (f"software: deeprecipe.stages.synthetic_crawl\r\nformat: WARC File Format 1.1\r\n"
            f"seed: {config.seed}\r\nfile_index: {file_index}\r\n").encode()
    emit(writer.create_warc_record("", "warcinfo", payload=BytesIO(info), length=len(info),
                                   warc_content_type="application/warc-fields",
                                   warc_headers_dict=headers({"WARC-Filename": warc_file_name(config, file_index)})),
         _ground_row(kind="warcinfo", record_type="warcinfo"))

    for slot in range(config.pages_per_file):
        for kind in extra_at.get(slot, ()):
            emit(*_non_document_record(writer, kind, config, file_index, slot, headers, http_response))
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
                                                                    url=url))
        body, content_type = encode_page(page)
        record = writer.create_warc_record(url, "response", payload=BytesIO(body), length=len(body),
                                           warc_headers_dict=headers(),
                                           http_headers=http_response("200 OK", content_type, body))
        emit(record, _ground_row(kind=kind, record_type="response", url=url, canonical_url=canon,
                                 site=page.site.host, lang=page.site.lang, variant=variant,
                                 page_id=page.page_id, charset=page.charset))
    return rows


def _ground_row(kind: str, record_type: str, url: str = "", canonical_url: str = "", site: str = "",
                lang: str = "", variant: str = "", page_id: int = -1, charset: str = "") -> dict:
    is_document = kind in ("original", "exact_dup", "url_variant")
    return {"record_type": record_type, "url": url, "canonical_url": canonical_url, "site": site,
            "lang": lang, "kind": kind, "variant": variant, "page_id": page_id,
            "is_document": is_document, "skip_reason": "" if is_document else NON_DOCUMENT_KINDS[kind],
            "charset": charset}


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


def ground_truth(config: SyntheticCrawlConfig):
    """Ground-truth rows of every file as a pandas DataFrame (adds ``file_index`` and ``file_name``);
    regenerates the files in memory, so it costs as much as writing them."""
    import pandas as pd
    frames = []
    for i in range(config.num_files):
        rows = write_warc_file(BytesIO(), config, i)
        frames.append(pd.DataFrame(rows).assign(file_index=i, file_name=warc_file_name(config, i)))
    return pd.concat(frames, ignore_index=True)
