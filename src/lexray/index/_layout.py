"""What an index directory holds: file names, format versions, table columns, errors and reject codes.

Layout of an index directory ``INDEX``::

    INDEX/CURRENT                 name of the committed version (replaced atomically)
    INDEX/v-<time>-<rand>/        one committed version
        index.json                format, model reference, embedding width, counts, measured recall
        config.yaml               the resolved :class:`IndexConfig`
        studies.parquet           one row per study, in the manifest's own schema (``lexray.data.manifest``);
                                  its images list is empty: images.parquet lists the indexed files
        images.parquet            one row per image file (study_id, path, view, image_id)
        image_vectors.npy, image.faiss   (N_images, D) vectors aligned with images.parquet, and FAISS
        texts.parquet             one row per embedded report (study_id), aligned with ...
        text_vectors.npy, text.faiss     (N_texts, D) vectors and FAISS
        rejects.jsonl             records skipped, as the data stage's reject records
    INDEX/.work/<job>/            embedded chunks of an unfinished build (resume reuses them)

Format 1 (lexray before the manifest-schema studies table) stored studies.parquet as flat string columns
(``extra`` as JSON) and rejects as ``{study_id, modality, item, reason}``; :mod:`lexray.index._legacy`
reads it, and an append to such an index writes a format-2 version.
"""

from __future__ import annotations

from lexray.errors import LexrayError

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1 is migrated on read (see lexray.index._legacy)

CURRENT_FILE = "CURRENT"
INFO_FILE = "index.json"
CONFIG_FILE = "config.yaml"
STUDIES_FILE = "studies.parquet"
IMAGES_FILE = "images.parquet"
TEXTS_FILE = "texts.parquet"
REJECTS_FILE = "rejects.jsonl"
WORK_DIR = ".work"
STAGING_PREFIX = ".staging-"
LOCK_FILE = ".lock"
VECTOR_FILES = {"image": "image_vectors.npy", "text": "text_vectors.npy"}
FAISS_FILES = {"image": "image.faiss", "text": "text.faiss"}
META_FILES = {"image": IMAGES_FILE, "text": TEXTS_FILE}

IMAGE_COLUMNS = ["study_id", "path", "view", "image_id"]
TEXT_COLUMNS = ["study_id"]
META_COLUMNS = {"image": IMAGE_COLUMNS, "text": TEXT_COLUMNS}

# Reject reasons (``lexray.data.study.Reject.reason``) of the index stage; the record is the study id.
# A reason ending in "_image" concerns one image file, one ending in "_report" the study's text.
EMPTY_STUDY_ID = "empty_study_id"
DUPLICATE_STUDY = "duplicate_study_id"
ALREADY_INDEXED = "already_indexed"
MISSING_IMAGE = "missing_image"
UNEMBEDDABLE = {"image": "unembeddable_image", "text": "unembeddable_report"}
EMPTY_REPORT = "empty_report"


class IndexFormatError(LexrayError, RuntimeError):
    """A directory is not a committed lexray index, or its files disagree with each other."""


class IndexBusyError(LexrayError, RuntimeError):
    """Another process is building or appending to the same index directory."""
