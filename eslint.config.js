// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'coverage/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // The platform-free core: no Node imports (style guide: a core with no Node imports).
    files: [
      'src/pgtable/**/*.ts',
      'src/mmu/**/*.ts',
      'src/scenario/**/*.ts',
      'src/replay/**/*.ts',
      'src/trace/**/*.ts',
    ],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['node:*', 'fs', 'path', 'util', 'process'] }],
    },
  },
);
