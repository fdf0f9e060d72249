import '@mantine/core/styles.css'
import './app.css'
import {
  ColorSchemeScript,
  type CSSVariablesResolver,
  DEFAULT_THEME,
  MantineProvider,
  createTheme,
  darken,
} from '@mantine/core'
import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { BrowserRouter } from 'react-router-dom'
import { App } from './App'

// primary shade 8: white on filled buttons, links on white, both at 4.5:1 or more (axe)
const theme = createTheme({ primaryColor: 'blue', primaryShade: { light: 8, dark: 8 }, defaultRadius: 'md' })

// Light scheme: the text of light badges (statuses) and dimmed text darker than
// Mantine's (its darkest shade, darkened further), for a 4.5:1 contrast (WCAG AA; axe checks every page in tests/e2e)
const COLORS = ['gray', 'red', 'pink', 'grape', 'violet', 'indigo', 'blue', 'cyan', 'teal', 'green', 'lime', 'yellow', 'orange']
const resolver: CSSVariablesResolver = () => ({
  variables: {},
  light: {
    '--mantine-color-dimmed': 'var(--mantine-color-gray-7)',
    ...Object.fromEntries(COLORS.map((c) => [`--mantine-color-${c}-light-color`, darken(DEFAULT_THEME.colors[c][9], 0.35)])),
  },
  dark: { '--mantine-color-dimmed': 'var(--mantine-color-dark-1)' },
})

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <ColorSchemeScript defaultColorScheme="auto" />
    <MantineProvider theme={theme} cssVariablesResolver={resolver} defaultColorScheme="auto">
      <BrowserRouter>
        <App />
      </BrowserRouter>
    </MantineProvider>
  </StrictMode>,
)
