"""The mock survey: a DR10-like sample generated offline, lenscal's embedded default data."""

from lenscal.mock.survey import MockSurveyReport, make_mock_survey

__all__ = ["MockSurveyReport", "make_mock_survey"]
