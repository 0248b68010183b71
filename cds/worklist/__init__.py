"""The pharmacists' worklist in the browser (`cds review serve`): the queue, a page per
patient with the decision forms, the letters to prescribers and the program dashboard, on the
decisions store. docs/review.md."""
