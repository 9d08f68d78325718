"""retrieval: offline keyword search over documents bundled with the pipeline.

Demonstrates:
- reading data files relative to the wrapper (``Path(__file__).parent / "docs"``);
- setup() filling an InMemoryDocumentStore once at startup (no network, no models);
- a pipeline with an InMemoryBM25Retriever, and run_api() returning plain JSON data.

    curl -s -XPOST localhost:1416/retrieval/run -H 'content-type: application/json' \
         -d '{"query":"worker processes and CPU cores","top_k":2}'
    -> {"result":[{"content":"...","score":...,"source":"workers.txt"}, ...]}
"""

from pathlib import Path
from typing import Annotated

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore
from pydantic import Field

from hayhooks import BasePipelineWrapper

DOCS_DIR = Path(__file__).parent / "docs"


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        # shared=False: the documents belong to this wrapper instance only (freed on redeploy).
        document_store = InMemoryDocumentStore(shared=False)
        document_store.write_documents(
            [
                Document(content=path.read_text(encoding="utf-8").strip(), meta={"source": path.name})
                for path in sorted(DOCS_DIR.glob("*.txt"))
            ]
        )
        self.pipeline = Pipeline()
        self.pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=document_store))

    def run_api(
        self,
        query: Annotated[str, Field(min_length=1, max_length=1000)],
        top_k: Annotated[int, Field(ge=1, le=20)] = 3,
    ) -> list[dict]:
        """
        Search the bundled documents with BM25 keyword ranking.

        Args:
            query: Words to search for (the retriever refuses an empty query: 422 before it runs).
            top_k: Maximum number of documents to return (1 to 20).

        Returns:
            The best matching documents, best first, each with its content, BM25 score and source file name.
        """
        result = self.pipeline.run({"retriever": {"query": query, "top_k": top_k}})
        return [
            {"content": doc.content, "score": round(doc.score, 4), "source": doc.meta["source"]}
            for doc in result["retriever"]["documents"]
        ]
