"""Project 7: a synthetic market-data generator for strategy testing.

Introduced in lesson 7.6 (``m07-l06``). :mod:`data` cuts real S&P 500 daily log returns into
windows split by time; :mod:`stylised_facts` measures heavy tails, volatility clustering, the
absence of linear autocorrelation and the leverage effect; :mod:`baselines` fits geometric
Brownian motion and GARCH(1,1); :mod:`generator` trains a 1-D diffusion model on the windows;
:mod:`evaluation` scores every generator with a real-vs-fake discriminator and a back-test.
"""
